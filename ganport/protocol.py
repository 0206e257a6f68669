"""The Open Inference Protocol (KServe V2, spoken by Triton, KServe and MLServer) for numpy tensors: datatypes,
inference requests and responses in JSON and in Triton's binary-data extension, and Triton's model configuration.

numpy, orjson and onnx_io's signature reader: `ganport serve` and `ganport export --format triton` share it, and
neither imports TensorFlow.
No maintained library decodes the protocol on the server side (tritonclient encodes the client's half only), so it is
written here, to the spec: https://kserve.github.io/website/docs/concepts/architecture/data-plane/v2-protocol and
Triton's docs/protocol/extension_binary_data.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ganport.errors import ModelError
from ganport.onnx_io import ELEMENT_TYPES, signature

if TYPE_CHECKING:
    from ganport.onnx_io import Tensor

# The protocol's datatype for each onnxruntime element type ganport reads (onnx_io.ELEMENT_TYPES holds their numpy
# types); Triton's config says TYPE_<name>.
_V2_NAMES = {
    "tensor(bool)": "BOOL",
    "tensor(uint8)": "UINT8",
    "tensor(uint16)": "UINT16",
    "tensor(uint32)": "UINT32",
    "tensor(uint64)": "UINT64",
    "tensor(int8)": "INT8",
    "tensor(int16)": "INT16",
    "tensor(int32)": "INT32",
    "tensor(int64)": "INT64",
    "tensor(float16)": "FP16",
    "tensor(float)": "FP32",
    "tensor(double)": "FP64",
}
DATATYPES: dict[str, np.dtype] = {name: np.dtype(ELEMENT_TYPES[onnx_type]) for onnx_type, name in _V2_NAMES.items()}
# The header that says how much of a body is JSON; the rest is binary tensor data (Triton's extension).
HEADER_LENGTH = "Inference-Header-Content-Length"
JSON_TYPE = "application/json"
BINARY_TYPE = "application/octet-stream"
# Dynamic batching defaults shared by `ganport serve` and the Triton configuration it exports.
DEFAULT_MAX_BATCH = 256
DEFAULT_MAX_WAIT_MS = 2.0
MODEL_VERSION = "1"


class ProtocolError(Exception):
    """A request the protocol or the model cannot take; `status` is the HTTP answer (400, 413, 503)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class TensorSpec:
    """One input or output of a served model; shape[0] is the batch axis (-1)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    @property
    def dtype(self) -> np.dtype:
        return DATATYPES[self.datatype]

    def metadata(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    @classmethod
    def of_onnx(cls, tensor: Tensor) -> TensorSpec:
        """An ONNX tensor in the protocol's terms: -1 for each dynamic axis, named or not."""
        if tensor.type not in _V2_NAMES:
            raise ProtocolError(f"{tensor.name} holds {tensor.type}; supported: {', '.join(_V2_NAMES)}.")
        return cls(tensor.name, _V2_NAMES[tensor.type], tuple(-1 if side is None else side for side in tensor.fixed))


def onnx_signature(source: Any, path: Path, purpose: str) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The inputs and outputs of an ONNX model (a ModelProto or a session, as onnx_io.signature reads them) in the
    protocol's terms; a tensor the protocol cannot carry is one ModelError: "`path` cannot be `purpose`: why"."""
    try:
        inputs, outputs = ([TensorSpec.of_onnx(tensor) for tensor in tensors] for tensors in signature(source))
    except ProtocolError as error:
        raise ModelError(f"{path} cannot be {purpose}: {error}") from None
    return inputs, outputs


@dataclass
class InferRequest:
    """A decoded request: inputs as arrays in the model's input order, and how each output is to be returned."""

    id: str | None
    inputs: dict[str, np.ndarray]
    outputs: list[str]
    binary_outputs: set[str]

    @property
    def rows(self) -> int:
        return len(next(iter(self.inputs.values())))


def decode_request(
    body: bytes, header_length: int | None, inputs: Sequence[TensorSpec], outputs: Sequence[TensorSpec]
) -> InferRequest:
    """Parse and check an infer request against the model's inputs: every input present once, of its datatype and
    shape (any batch), one batch size for all, float inputs finite; requested outputs known."""
    if header_length is not None and not 0 < header_length <= len(body):
        raise ProtocolError(f"{HEADER_LENGTH} is {header_length}, but the body has {len(body)} bytes.")
    text = body[:header_length] if header_length is not None else body
    header = _json_object(text)
    # JSON's true and false are not numbers; numpy would read them as 1 and 0. The exact scan only runs when one
    # of the words is in the text at all.
    may_hold_booleans = b"true" in text or b"false" in text
    binary = memoryview(body)[header_length:] if header_length is not None else memoryview(b"")
    received = header.get("inputs")
    if not isinstance(received, list) or not all(isinstance(item, dict) for item in received):
        raise ProtocolError('The request needs "inputs": a list of tensors {"name", "datatype", "shape", "data"}.')
    by_name = {spec.name: spec for spec in inputs}
    names = [_name(item) for item in received]
    unknown = [name for name in names if name not in by_name]
    missing = [name for name in by_name if name not in names]
    if unknown or missing or len(names) != len(set(names)):
        raise ProtocolError(
            f"The model takes inputs {', '.join(by_name)}, once each. Received: {', '.join(map(str, names)) or 'none'}."
        )
    arrays: dict[str, np.ndarray] = {}
    offset = 0
    for name, item in zip(names, received, strict=True):
        spec = by_name[name]
        array, used = _decode_tensor(item, spec, binary[offset:], may_hold_booleans)
        offset += used
        arrays[spec.name] = array
    if offset != len(binary):
        raise ProtocolError(f"The body has {len(binary) - offset} bytes of binary data that no input claims.")
    rows = {len(array) for array in arrays.values()}
    if len(rows) != 1 or 0 in rows:
        sizes = ", ".join(f"{name} {len(array)}" for name, array in arrays.items())
        raise ProtocolError(f"Every input needs the same batch size, at least 1. Received: {sizes}.")
    requested, binary_outputs = _requested_outputs(header, outputs)
    request_id = header.get("id")
    return InferRequest(
        str(request_id) if request_id is not None else None,
        {spec.name: arrays[spec.name] for spec in inputs},
        requested,
        binary_outputs,
    )


def _name(tensor: dict) -> str:
    """A tensor's "name", or its JSON text when it is not a string (so it can be reported, never looked up)."""
    name = tensor.get("name")
    return name if isinstance(name, str) else orjson.dumps(name).decode()


def _parameters(value: dict) -> dict:
    parameters = value.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise ProtocolError(f'"parameters" must be a JSON object. Received: {orjson.dumps(parameters).decode()}')
    return parameters


def _json_object(text: bytes | memoryview) -> dict:
    try:
        header = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise ProtocolError(f"The request is not valid JSON ({error}).") from None
    if not isinstance(header, dict):
        raise ProtocolError(f"The request must be a JSON object. Received: {type(header).__name__}.")
    return header


def _is_count(value: object) -> bool:
    """A JSON integer >= 0; true and false are Python ints too, but not counts."""
    return type(value) is int and value >= 0


def _holds_boolean(data: object) -> bool:
    if isinstance(data, list):
        return any(_holds_boolean(item) for item in data)
    return isinstance(data, bool)


# The JSON number kinds each datatype takes (numpy's kind letters): an integer tensor takes integers only, so a
# label of 3.7 or "7" is refused instead of becoming 3 or 7.
_JSON_KINDS = {"b": "b", "i": "iu", "u": "iu", "f": "iuf"}


def _decode_tensor(item: dict, spec: TensorSpec, binary: memoryview, may_hold_booleans: bool) -> tuple[np.ndarray, int]:
    """One input tensor as an array of the model's shape, and how many bytes of binary data it used."""
    name, datatype, shape = spec.name, item.get("datatype"), item.get("shape")
    if datatype != spec.datatype:
        raise ProtocolError(f"Input {name} is {spec.datatype}. Received: datatype={datatype!r}.")
    if not (isinstance(shape, list) and shape and all(_is_count(side) for side in shape)):
        raise ProtocolError(f"Input {name} needs a shape like {_shape_text(spec)}. Received: shape={shape!r}.")
    if len(shape) != len(spec.shape) or any(want not in (-1, got) for want, got in zip(spec.shape, shape, strict=True)):
        raise ProtocolError(f"Input {name} has shape {_shape_text(spec)}. Received: shape={shape}.")
    count = math.prod(shape)
    size = _parameters(item).get("binary_data_size")
    if size is not None:
        if not _is_count(size) or size != count * spec.dtype.itemsize or size > len(binary):
            raise ProtocolError(
                f"Input {name} {shape} of {datatype} needs {count * spec.dtype.itemsize} bytes of binary data. "
                f"Received: binary_data_size={size!r}, {len(binary)} bytes left in the body."
            )
        array = np.frombuffer(binary[:size], dtype=spec.dtype.newbyteorder("<")).reshape(shape)
        used = size
    else:
        if "data" not in item:
            raise ProtocolError(f'Input {name} has neither "data" nor binary_data_size.')
        data = item["data"]
        kinds = _JSON_KINDS[spec.dtype.kind]
        try:
            received = np.asarray(data)  # numpy's reading of the JSON: integers, floats, booleans or strings
            booleans_as_numbers = spec.dtype.kind != "b" and may_hold_booleans and _holds_boolean(data)
            if received.dtype.kind not in kinds or booleans_as_numbers:
                raise TypeError
            with np.errstate(over="ignore"):  # a value beyond the datatype's range becomes Inf, refused below
                array = received.astype(spec.dtype)
            if spec.dtype.kind in "iu" and not np.array_equal(array, received):
                raise OverflowError
        except (TypeError, ValueError, OverflowError):
            wanted = "true/false" if spec.dtype.kind == "b" else "integers" if spec.dtype.kind in "iu" else "numbers"
            raise ProtocolError(
                f"Input {name} must hold {datatype} {wanted} in JSON, without quotes, true/false only for BOOL."
            ) from None
        if array.size != count:
            raise ProtocolError(f"Input {name} has shape {shape}, so {count} values. Received: {array.size}.")
        array = array.reshape(shape)
        used = 0
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ProtocolError(f"Input {name} holds NaN or Inf; send finite numbers.")
    return array, used


def _requested_outputs(header: dict, outputs: Sequence[TensorSpec]) -> tuple[list[str], set[str]]:
    binary_default = _flag(_parameters(header), "binary_data_output")
    asked = header.get("outputs")
    if asked is None:
        names = [spec.name for spec in outputs]
        return names, set(names) if binary_default else set()
    if not isinstance(asked, list) or not all(isinstance(item, dict) for item in asked):
        raise ProtocolError('"outputs" must be a list of {"name": ...}.')
    known = {spec.name for spec in outputs}
    names = [_name(item) for item in asked]
    unknown = [name for name in names if name not in known]
    if unknown:
        raise ProtocolError(f"The model has outputs {', '.join(known)}. Received: {', '.join(unknown)}.")
    binary = {
        name for name, item in zip(names, asked, strict=True) if _flag(_parameters(item), "binary_data", binary_default)
    }
    return names, binary


def _flag(parameters: dict, name: str, default: bool = False) -> bool:
    """A boolean parameter: JSON true or false only (the string "false" is not false)."""
    value = parameters.get(name, default)
    if not isinstance(value, bool):
        raise ProtocolError(f"Parameter {name} must be true or false. Received: {orjson.dumps(value).decode()}")
    return value


# The most bytes one element takes in a JSON reply: a float32 written shortest (-1.1754944e-38) or an int64, a comma.
JSON_BYTES_PER_ELEMENT = 24


def response_size(request: InferRequest, outputs: dict[str, np.ndarray]) -> int:
    """An upper bound on encode_response's body for these outputs, known before it is built."""
    return sum(
        outputs[name].nbytes if name in request.binary_outputs else outputs[name].size * JSON_BYTES_PER_ELEMENT
        for name in request.outputs
    )


def encode_response(
    model: str, request: InferRequest, outputs: dict[str, np.ndarray], specs: Sequence[TensorSpec]
) -> tuple[bytes, int | None]:
    """The response body, and the JSON header's length when binary tensors follow it (else None)."""
    datatypes = {spec.name: spec.datatype for spec in specs}
    tensors, blobs = [], []
    for name in request.outputs:
        array = np.ascontiguousarray(outputs[name], dtype=DATATYPES[datatypes[name]].newbyteorder("<"))
        tensor: dict[str, Any] = {"name": name, "datatype": datatypes[name], "shape": list(array.shape)}
        if name in request.binary_outputs:
            blob = array.tobytes()
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = array.reshape(-1)
        tensors.append(tensor)
    response: dict[str, Any] = {"model_name": model, "model_version": MODEL_VERSION, "outputs": tensors}
    if request.id is not None:
        response["id"] = request.id
    header = orjson.dumps(response, option=orjson.OPT_SERIALIZE_NUMPY)
    if not blobs:
        return header, None
    return b"".join([header, *blobs]), len(header)


def _shape_text(spec: TensorSpec) -> str:
    return "[" + ", ".join("batch" if side == -1 else str(side) for side in spec.shape) + "]"


def triton_config(
    name: str,
    inputs: Sequence[TensorSpec],
    outputs: Sequence[TensorSpec],
    max_batch: int = DEFAULT_MAX_BATCH,
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS,
    gpu: bool = False,
) -> dict[str, Any]:
    """Triton's model configuration (model_config.proto as JSON) for an ONNX model batched on its first axis: the
    onnxruntime backend, dims without the batch, dynamic batching, a CPU instance group, and with `gpu` also a GPU
    group whose ONNX sessions run under TensorRT in FP16."""

    def tensors(specs: Sequence[TensorSpec]) -> list[dict[str, Any]]:
        return [
            {"name": spec.name, "data_type": f"TYPE_{spec.datatype}", "dims": list(spec.shape[1:])} for spec in specs
        ]

    groups = [{"kind": "KIND_CPU", "count": 1}]
    config: dict[str, Any] = {
        "name": name,
        "backend": "onnxruntime",
        "max_batch_size": max_batch,
        "input": tensors(inputs),
        "output": tensors(outputs),
        "dynamic_batching": {"max_queue_delay_microseconds": round(max_wait_ms * 1000)},
        "instance_group": groups,
    }
    if gpu:
        groups.append({"kind": "KIND_GPU", "count": 1})
        config["optimization"] = {
            "execution_accelerators": {
                "gpu_execution_accelerator": [{"name": "tensorrt", "parameters": {"precision_mode": "FP16"}}]
            }
        }
    return config
