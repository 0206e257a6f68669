"""The Open Inference Protocol codec: JSON and binary tensors decoded and checked, responses encoded the way
tritonclient reads them."""

from __future__ import annotations

import json

import numpy as np
import pytest
from tritonclient.http import InferResult

from ganport.protocol import HEADER_LENGTH, ProtocolError, TensorSpec, decode_request, encode_response

INPUTS = [TensorSpec("z", "FP32", (-1, 3)), TensorSpec("label", "INT64", (-1, 1))]
OUTPUTS = [TensorSpec("image", "FP32", (-1, 2, 2, 1))]


def _json(z: list, labels: list, **extra: object) -> bytes:
    inputs = [
        {"name": "z", "datatype": "FP32", "shape": [len(z), 3], "data": z},
        {"name": "label", "datatype": "INT64", "shape": [len(labels), 1], "data": labels},
    ]
    return json.dumps({"inputs": inputs, **extra}).encode()


def _binary(z: np.ndarray, labels: np.ndarray, header: dict | None = None) -> tuple[bytes, int]:
    inputs = [
        {"name": "z", "datatype": "FP32", "shape": list(z.shape), "parameters": {"binary_data_size": z.nbytes}},
        {
            "name": "label",
            "datatype": "INT64",
            "shape": list(labels.shape),
            "parameters": {"binary_data_size": labels.nbytes},
        },
    ]
    text = json.dumps({"inputs": inputs, **(header or {})}).encode()
    return text + z.tobytes() + labels.tobytes(), len(text)


def test_json_and_binary_requests_decode_to_the_same_arrays():
    z = np.arange(6, dtype=np.float32).reshape(2, 3) / 7
    labels = np.array([[3], [9]], np.int64)
    from_json = decode_request(_json(z.tolist(), labels.ravel().tolist()), None, INPUTS, OUTPUTS)
    body, length = _binary(z, labels)
    from_binary = decode_request(body, length, INPUTS, OUTPUTS)
    for decoded in (from_json, from_binary):
        assert decoded.rows == 2 and list(decoded.inputs) == ["z", "label"]
        np.testing.assert_array_equal(decoded.inputs["z"], z)
        np.testing.assert_array_equal(decoded.inputs["label"], labels)
        assert decoded.outputs == ["image"]
    assert from_json.binary_outputs == set() and from_binary.binary_outputs == set()


@pytest.mark.parametrize("binary", [False, True])
def test_responses_read_back_with_tritonclient(binary):
    """encode_response's bytes, parsed by tritonclient's own InferResult, give back the exact array."""
    image = np.random.default_rng(0).standard_normal((2, 2, 2, 1)).astype(np.float32)
    header = {"id": "7", "outputs": [{"name": "image", "parameters": {"binary_data": binary}}]}
    request = decode_request(_json([[0, 0, 0]] * 2, [1, 2], **header), None, INPUTS, OUTPUTS)
    body, length = encode_response("m", request, {"image": image}, OUTPUTS)
    assert (length is not None) == binary
    result = InferResult.from_response_body(body, header_length=length)
    np.testing.assert_array_equal(result.as_numpy("image"), image)
    response = result.get_response()
    assert response["id"] == "7" and response["model_name"] == "m" and response["model_version"] == "1"


def test_binary_data_output_asks_for_every_output_in_binary():
    request = decode_request(_json([[0, 0, 0]], [1], parameters={"binary_data_output": True}), None, INPUTS, OUTPUTS)
    assert request.binary_outputs == {"image"}


def _error(body: bytes, length: int | None = None) -> str:
    with pytest.raises(ProtocolError) as raised:
        decode_request(body, length, INPUTS, OUTPUTS)
    assert raised.value.status == 400
    return str(raised.value)


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"inputs": 3}', '"inputs"'),
        (_json([[0, 0, 0]], [1]).replace(b'"label"', b'"labels"'), "takes inputs z, label"),
        (b'{"inputs": [{"name": ["z"]}]}', 'Received: ["z"]'),
        (_json([[0, 0, 0]], [1]).replace(b'"FP32"', b'"FP64"'), "Received: datatype='FP64'"),
        (_json([[0, 0, 0, 0]], [1]).replace(b"[1, 3]", b"[1, 4]"), "has shape [batch, 3]"),
        (_json([[0, 0]], [1]), "so 3 values. Received: 2"),
        (_json([["a", "b", "c"]], [1]), "must hold FP32 numbers"),
        # JSON types are kept: no label is rounded, parsed from a string or taken from a boolean
        (_json([[0, 0, 0]], [3.7]), "must hold INT64 integers"),
        (_json([[0, 0, 0]], [-0.9]), "must hold INT64 integers"),
        (_json([[0, 0, 0]], ["7"]), "must hold INT64 integers"),
        (_json([[0, 0, 0]], [True]), "must hold INT64 integers"),
        (_json([[0, 0, 0]], [2**63]), "must hold INT64 integers"),
        (_json([[0, 0, True]], [1]), "must hold FP32 numbers"),
        (_json([[0, 0, 0]], [1]).replace(b"[1, 3]", b"[true, 3]"), "needs a shape like [batch, 3]"),
        (_json([[0, 0, 0]], [1], parameters={"binary_data_output": "false"}), "must be true or false"),
        (_json([[0, 0, 0]], [1], outputs=[{"name": "image", "parameters": {"binary_data": 0}}]), "true or false"),
        (_json([[0, 0, 0.5]], [1]).replace(b"0.5", b"1e39"), "NaN or Inf"),  # beyond float32's range
        (_json([[0, 0, 0]], [1, 2]), "same batch size"),
        (_json([[0, 0, 0]], [1], outputs=[{"name": "logits"}]), "has outputs image. Received: logits"),
        (_json([[0, 0, 0]], [1], parameters=[1]), '"parameters" must be a JSON object'),
    ],
)
def test_bad_json_requests_say_what_is_wrong(body, fragment):
    assert fragment in _error(body)


def test_bad_binary_requests_say_what_is_wrong():
    z, labels = np.zeros((1, 3), np.float32), np.zeros((1, 1), np.int64)
    body, length = _binary(z, labels)
    assert "needs 12 bytes" in _error(body.replace(b'"binary_data_size": 12', b'"binary_data_size": 11'), length)
    assert "no input claims" in _error(body + b"\0\0\0\0", length)
    boolean_size = body.replace(b'"binary_data_size": 8', b'"binary_data_size": true')
    assert "binary_data_size=True" in _error(boolean_size, length + 3)
    assert HEADER_LENGTH in _error(body, len(body) + 1)
    nan = np.full((1, 3), np.nan, np.float32)
    assert "NaN or Inf" in _error(*_binary(nan, labels))
