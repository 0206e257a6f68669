"""`ganport serve` as a real process: the Open Inference Protocol through tritonclient (JSON and binary tensors), every
bad request answered 4xx while the server keeps serving, sample grids, metrics, graceful SIGTERM, micro-batching."""

from __future__ import annotations

import asyncio
import gzip
import io
import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import tritonclient.http as triton
from PIL import Image
from serving import MODELS, call, post_json, running_server
from typer.testing import CliRunner

from conftest import assert_one_line_error
from ganport.cli import app
from ganport.protocol import HEADER_LENGTH, ProtocolError
from ganport.runtime import Generator
from ganport.serve import settings as serve_settings

MAX_BATCH = 64
MAX_BODY_MB = 0.5


@pytest.fixture(scope="module")
def served_files(tmp_path_factory):
    """The shipped MLP and conditional generators and the classifier, under names of their own."""
    folder = tmp_path_factory.mktemp("served")
    for name, source in (
        ("gan", MODELS / "mnist-gan" / "generator.onnx"),
        ("cgan", MODELS / "mnist-cgan" / "generator.onnx"),
        ("classifier", MODELS / "mnist-classifier.onnx"),
    ):
        shutil.copy(source, folder / f"{name}.onnx")
    return folder


@pytest.fixture(scope="module")
def server(served_files):
    files = [served_files / f"{name}.onnx" for name in ("gan", "cgan", "classifier")]
    with running_server(*files, "--max-batch", MAX_BATCH, "--max-body-mb", MAX_BODY_MB) as running:
        yield running


@pytest.fixture(scope="module")
def client(server):
    with triton.InferenceServerClient(server.address) as connection:
        yield connection


def _noise(rows: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((rows, 100)).astype(np.float32)


def _infer(client, model: str, noise: np.ndarray, labels: np.ndarray | None = None, binary: bool = True):
    inputs = [triton.InferInput("z", list(noise.shape), "FP32")]
    inputs[0].set_data_from_numpy(noise, binary_data=binary)
    if labels is not None:
        inputs.append(triton.InferInput("label", list(labels.shape), "INT64"))
        inputs[1].set_data_from_numpy(labels, binary_data=binary)
    outputs = [triton.InferRequestedOutput("image", binary_data=binary)]
    return client.infer(model, inputs, outputs=outputs).as_numpy("image")


def test_health_and_metadata_through_tritonclient(client):
    assert client.is_server_live() and client.is_server_ready()
    assert client.get_server_metadata()["extensions"] == ["binary_tensor_data"]
    for name in ("gan", "cgan", "classifier"):
        assert client.is_model_ready(name)
    gan = client.get_model_metadata("gan")
    assert gan["inputs"] == [{"name": "z", "datatype": "FP32", "shape": [-1, 100]}]
    assert gan["outputs"] == [{"name": "image", "datatype": "FP32", "shape": [-1, 28, 28, 1]}]
    cgan = client.get_model_metadata("cgan", model_version="1")
    assert [item["name"] for item in cgan["inputs"]] == ["z", "label"] and cgan["inputs"][1]["datatype"] == "INT64"
    config = client.get_model_config("cgan")
    assert config["max_batch_size"] == MAX_BATCH and [item["dims"] for item in config["input"]] == [[100], [1]]


@pytest.mark.parametrize("binary", [True, False], ids=["binary", "json"])
def test_tritonclient_gets_what_onnxruntime_gives(client, served_files, binary):
    noise = _noise(5)
    expected = Generator(served_files / "gan.onnx", device="cpu").generate(noise)
    np.testing.assert_allclose(_infer(client, "gan", noise, binary=binary), expected, atol=1e-6)
    labels = np.arange(5, dtype=np.int64).reshape(5, 1)
    expected = Generator(served_files / "cgan.onnx", device="cpu").generate(noise, labels=labels)
    np.testing.assert_allclose(_infer(client, "cgan", noise, labels, binary=binary), expected, atol=1e-6)


def test_json_data_round_trips_float32_exactly(client):
    noise = _noise(3, seed=4)
    np.testing.assert_array_equal(_infer(client, "gan", noise, binary=False), _infer(client, "gan", noise))


def test_any_onnx_model_is_served(client):
    """The classifier is not a generator: it is served all the same (no sample grid)."""
    images = np.zeros((2, 28, 28, 1), np.float32)
    request = triton.InferInput("image", [2, 28, 28, 1], "FP32")
    request.set_data_from_numpy(images)
    result = client.infer("classifier", [request])
    outputs = client.get_model_metadata("classifier")["outputs"]
    assert len(outputs) == 2  # class probabilities and the features Fréchet distance uses
    for output in outputs:
        assert list(result.as_numpy(output["name"]).shape) == [2, *output["shape"][1:]]


def test_tritonclient_defaults_and_compressed_requests(client):
    """With no outputs named, tritonclient asks for binary outputs; gzip and deflate bodies are inflated."""
    noise = _noise(2)
    request = triton.InferInput("z", [2, 100], "FP32")
    request.set_data_from_numpy(noise)
    plain = client.infer("gan", [request]).as_numpy("image")
    for algorithm in ("gzip", "deflate"):
        compressed = client.infer("gan", [request], request_compression_algorithm=algorithm).as_numpy("image")
        np.testing.assert_array_equal(compressed, plain)


def _json_body(rows: int, **changes: object) -> dict:
    tensor = {"name": "z", "datatype": "FP32", "shape": [rows, 100], "data": _noise(rows).ravel().tolist()}
    return {"inputs": [{**tensor, **changes}]}


def _bad_requests(url: str) -> list[tuple[str, int, bytes, dict]]:
    infer = f"{url}/v2/models/gan/infer"
    nan = np.full((1, 100), np.nan, np.float32).tobytes()
    header = json.dumps(
        {"inputs": [{"name": "z", "datatype": "FP32", "shape": [1, 100], "parameters": {"binary_data_size": 400}}]}
    ).encode()
    oversized = json.dumps(_json_body(1)).encode() + b" " * int(MAX_BODY_MB * 2**20)
    bomb = gzip.compress(b" " * (4 * 2**20))
    return [
        (infer, 400, b"{not json", {}),
        (infer, 400, json.dumps({"inputs": [{"name": "noise"}]}).encode(), {}),
        (infer, 400, json.dumps(_json_body(1, shape=[1, 99])).encode(), {}),
        (infer, 400, json.dumps(_json_body(1, datatype="FP64")).encode(), {}),
        (infer, 400, json.dumps(_json_body(MAX_BATCH + 1)).encode(), {}),
        (infer, 400, header + nan, {HEADER_LENGTH: str(len(header))}),
        (infer, 400, header + nan[:100], {HEADER_LENGTH: str(len(header))}),
        (infer, 413, oversized, {}),
        (infer, 413, bomb, {"Content-Encoding": "gzip"}),
        (infer, 415, b"{}", {"Content-Encoding": "br"}),
        (f"{url}/v2/models/cgan/infer", 400, json.dumps(_label_body(10)).encode(), {}),
        (f"{url}/v2/models/nope/infer", 404, json.dumps(_json_body(1)).encode(), {}),
        (f"{url}/v2/models/gan/versions/2/infer", 404, json.dumps(_json_body(1)).encode(), {}),
        (f"{url}/v2/nowhere", 404, None, {}),
        (f"{url}/v2/models/classifier/sample.png", 404, None, {}),
        (f"{url}/v2/models/gan/sample.png?n=257", 400, None, {}),
        (f"{url}/v2/models/gan/sample.png?label=3", 400, None, {}),
        (f"{url}/v2/models/cgan/sample.png?label=10", 400, None, {}),
        (f"{url}/v2/models/gan/sample.png?seed=x", 400, None, {}),
    ]


def _label_body(label: int) -> dict:
    body = _json_body(1)
    body["inputs"].append({"name": "label", "datatype": "INT64", "shape": [1, 1], "data": [label]})
    return body


def test_bad_requests_get_4xx_with_a_reason_and_the_server_keeps_serving(server, client):
    for url, status, body, headers in _bad_requests(server.url):
        answered, _, content = call(url, body, headers)
        assert answered == status, (url, content)
        message = json.loads(content)["error"]
        assert message and "Traceback" not in message, message
    assert call(f"{server.url}/v2/models/gan/infer", method="GET")[0] == 405
    status, body = post_json(f"{server.url}/v2/models/gan/infer", _json_body(2))
    assert status == 200 and body["outputs"][0]["shape"] == [2, 28, 28, 1]
    assert client.is_server_live()
    assert server.process.poll() is None


def test_sample_grid_png(server):
    status, headers, body = call(f"{server.url}/v2/models/gan/sample.png?n=16&seed=3")
    assert status == 200 and headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(body))
    assert picture.size == (4 * (4 * 30 + 2), 4 * (4 * 30 + 2))
    again = call(f"{server.url}/v2/models/gan/sample.png?n=16&seed=3")[2]
    other = call(f"{server.url}/v2/models/gan/sample.png?n=16&seed=4")[2]
    assert again == body and other != body
    sevens = call(f"{server.url}/v2/models/cgan/sample.png?n=4&seed=0&label=7")[2]
    threes = call(f"{server.url}/v2/models/cgan/sample.png?n=4&seed=0&label=3")[2]
    assert sevens != threes


def test_metrics_count_batches_and_requests(server):
    post_json(f"{server.url}/v2/models/gan/infer", _json_body(3))
    status, headers, body = call(f"{server.url}/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    sizes = {line.split()[0]: float(line.split()[1]) for line in text.splitlines() if line.startswith("ganport_")}
    assert sizes['ganport_batch_size_count{model="gan"}'] >= 1
    assert sizes['ganport_batch_size_sum{model="gan"}'] >= 3
    assert sizes['ganport_requests_total{model="gan",status="200"}'] >= 1
    assert 'ganport_request_seconds_bucket{le="0.01",model="gan"}' in text


def test_sigterm_answers_requests_in_flight_then_exits_0(served_files):
    """A request waits in a long batching window when SIGTERM comes: it is answered, then the server exits 0."""
    with running_server(served_files / "gan.onnx", "--max-wait-ms", 1500) as running:
        answers = []
        request = threading.Thread(
            target=lambda: answers.append(post_json(f"{running.url}/v2/models/gan/infer", _json_body(1)))
        )
        request.start()
        time.sleep(0.5)
        code = running.stop()
        request.join(30)
        assert code == 0, "".join(running.output)
        assert answers and answers[0][0] == 200
        assert "every request in flight was answered" in "".join(running.output)


def test_micro_batching_joins_concurrent_requests_and_splits_them_back(served_files):
    from ganport.serve import MicroBatcher, ServedModel
    from ganport.serve.batching import ServerMetrics

    model = ServedModel(served_files / "gan.onnx", "gan", device="cpu")
    sizes = []
    run = model.run
    model.run = lambda feeds: sizes.append(len(feeds["z"])) or run(feeds)
    noise = [_noise(rows, seed=rows) for rows in (1, 2, 3, 4)]

    async def scenario():
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=200, max_queue=16, metrics=ServerMetrics(8))
        batcher.start()
        try:
            return await asyncio.gather(*(batcher.infer({"z": rows}, len(rows)) for rows in noise))
        finally:
            await batcher.stop()

    results = asyncio.run(scenario())
    assert sizes == [6, 4]  # 1 + 2 + 3 rows; the 4 more would pass 8, so they make the next batch
    generator = Generator(served_files / "gan.onnx", device="cpu")
    for rows, result in zip(noise, results, strict=True):
        np.testing.assert_allclose(result["image"], generator.generate(rows), atol=1e-6)


def test_a_full_queue_refuses_with_503(served_files):
    from ganport.serve import MicroBatcher, ServedModel
    from ganport.serve.batching import ServerMetrics

    model = ServedModel(served_files / "gan.onnx", "gan", device="cpu")

    async def scenario():
        batcher = MicroBatcher(model, max_batch=2, max_wait_ms=0, max_queue=2, metrics=ServerMetrics(2))
        batcher._wake = asyncio.Event()  # not started: nothing leaves the queue
        waiting = asyncio.ensure_future(batcher.infer({"z": _noise(2)}, 2))
        await asyncio.sleep(0)
        with pytest.raises(ProtocolError) as refused:
            await batcher.infer({"z": _noise(1)}, 1)
        waiting.cancel()
        return refused.value

    refused = asyncio.run(scenario())
    assert refused.status == 503 and "retry" in str(refused)


def test_refusals_before_serving(served_files, tmp_path):
    runner = CliRunner()
    gan = served_files / "gan.onnx"
    copy = tmp_path / "gan.onnx"
    shutil.copy(gan, copy)
    cases = [
        (("serve", gan, copy), "Two models would be served as gan", 2),
        (("serve", gan, served_files / "cgan.onnx", "--name", "x"), "--name names one model", 2),
        (("serve", MODELS / "mnist-gan" / "generator.h5"), "is a Keras model", 1),
        (("serve", tmp_path / "missing.onnx"), "does not exist", 1),
        (("serve", gan, "--max-batch", "8", "--max-queue", "4"), "--max-queue must be from 8 to 1,048,576", 2),
    ]
    for args, fragment, code in cases:
        assert_one_line_error(runner.invoke(app, [str(arg) for arg in args]), fragment, exit_code=code)
    # every number is bounded (typer's ranges, from the same limits): threads by the cores, waits and sizes finite
    for option, value, bound in (
        ("--threads", 100000, serve_settings.MAX_THREADS),
        ("--max-wait-ms", "inf", serve_settings.MAX_WAIT_MS),
        ("--max-wait-ms", "nan", serve_settings.MAX_WAIT_MS),
        ("--max-body-mb", "1e308", serve_settings.MAX_BODY_MB),
        ("--max-queue", 2**63, serve_settings.MAX_QUEUE_ROWS),
    ):
        result = runner.invoke(app, ["serve", str(gan), option, str(value)])
        shown = str(bound).removesuffix(".0")
        assert result.exit_code == 2 and option in result.output and shown in result.output, result.output


def test_a_taken_port_is_a_clear_error(served_files):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = CliRunner().invoke(app, ["serve", str(served_files / "gan.onnx"), "--port", str(port)])
    assert_one_line_error(result, f"Cannot listen on 127.0.0.1:{port}", "--port", exit_code=2)


def test_serving_never_imports_tensorflow(served_files):
    code = (
        "import sys; from ganport.serve import InferenceServer, ServedModel; "
        f"InferenceServer([ServedModel({str(served_files / 'gan.onnx')!r}, 'gan', 'cpu')]); "
        "import ganport.cli; assert 'tensorflow' not in sys.modules, 'tensorflow imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_requests_that_cannot_be_joined_run_one_by_one(tmp_path):
    """A model with a dynamic second axis: two requests of different widths arrive in one window; each is answered."""
    import onnx
    from onnx import TensorProto, helper

    from ganport.serve import MicroBatcher, ServedModel
    from ganport.serve.batching import ServerMetrics

    graph = helper.make_graph(
        [helper.make_node("Neg", ["x"], ["y"])],
        "negate",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", "width"])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9)
    onnx.save(proto, tmp_path / "negate.onnx")
    model = ServedModel(tmp_path / "negate.onnx", "negate", device="cpu")
    assert model.generator is None and model.inputs[0].shape == (-1, -1)
    narrow, wide = np.ones((1, 2), np.float32), np.ones((1, 3), np.float32)

    async def scenario():
        batcher = MicroBatcher(model, max_batch=8, max_wait_ms=100, max_queue=16, metrics=ServerMetrics(8))
        batcher.start()
        try:
            both = asyncio.gather(batcher.infer({"x": narrow}, 1), batcher.infer({"x": wide}, 1))
            return await asyncio.wait_for(both, 30)  # before the fix the batcher died and both waited forever
        finally:
            await batcher.stop()

    first, second = asyncio.run(scenario())
    np.testing.assert_array_equal(first["y"], -narrow)
    np.testing.assert_array_equal(second["y"], -wide)
