"""`ganport serve` against hostile but realistic clients: everything a client controls is bounded (header and body
time, buffered bytes, connections, queued work), types on the wire are strict, cross-site requests are refused,
and no client behaviour produces a 500, a traceback in the log, or a dead server.

Resident memory is read from the server process itself (/proc/PID/status); the bounds are stated in README.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import shutil
import socket
import threading
import time
import urllib.parse

import numpy as np
import pytest
from serving import MODELS, call, post_json, running_server

from ganport.protocol import HEADER_LENGTH, ProtocolError
from ganport.serve.limits import HEADER_SECONDS

MAX_BATCH = 8
MAX_QUEUE = 64
MAX_BODY_MB = 0.5
# The server may grow by at most this much resident memory in any one hostile case (README: Serving limits).
RSS_GROWTH_MB = 64


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    for name, source in (("gan", "mnist-gan"), ("cgan", "mnist-cgan")):
        shutil.copy(MODELS / source / "generator.onnx", folder / f"{name}.onnx")
    args = ("--max-batch", MAX_BATCH, "--max-queue", MAX_QUEUE, "--max-body-mb", MAX_BODY_MB)
    with running_server(folder / "gan.onnx", folder / "cgan.onnx", *args) as running:
        yield running
    log = "".join(running.output)
    assert "Traceback" not in log and "Exception in ASGI application" not in log, log


def _address(server) -> tuple[str, int]:
    parts = urllib.parse.urlsplit(server.url)
    return parts.hostname, parts.port


def _rss_mb(server) -> float:
    with open(f"/proc/{server.process.pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _body(rows: int = 1, **changes: object) -> dict:
    noise = np.random.default_rng(0).standard_normal((rows, 100)).astype(np.float32)
    return {
        "inputs": [{"name": "z", "datatype": "FP32", "shape": [rows, 100], "data": noise.ravel().tolist(), **changes}]
    }


def _label_body(label: object) -> dict:
    body = _body()
    body["inputs"].append({"name": "label", "datatype": "INT64", "shape": [1, 1], "data": [label]})
    return body


def _metrics(server) -> dict[str, float]:
    text = call(f"{server.url}/metrics")[2].decode()
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def _still_serving(server) -> None:
    status, answer = post_json(f"{server.url}/v2/models/gan/infer", _body(2))
    assert status == 200 and answer["outputs"][0]["shape"] == [2, 28, 28, 1], answer


def _raw(server, data: bytes, timeout: float = 10) -> bytes:
    """Send bytes on a new connection and read until the server closes it or `timeout`."""
    with socket.create_connection(_address(server), timeout=timeout) as connection:
        connection.sendall(data)
        received = b""
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := connection.recv(65536):
                received += chunk
                if b"\r\n\r\n" in received and b'"error"' in received:
                    break
        return received


def test_wire_types_are_strict_and_outputs_finite(server):
    infer = f"{server.url}/v2/models/gan/infer"
    conditional = f"{server.url}/v2/models/cgan/infer"
    for label in (3.7, -0.9, "7", True):
        status, answer = post_json(conditional, _label_body(label))
        assert status == 400 and "must hold INT64 integers" in answer["error"], (label, answer)
    assert post_json(conditional, _label_body(7))[0] == 200
    status, answer = post_json(infer, _body(shape=[True, 100]))
    assert status == 400 and "shape" in answer["error"]
    status, answer = post_json(infer, {**_body(), "parameters": {"binary_data_output": "false"}})
    assert status == 400 and "true or false" in answer["error"]
    # finite inputs that drive the model to NaN: an error, never a JSON null with 200
    huge = _body()
    huge["inputs"][0]["data"] = [3e38] * 100
    status, answer = post_json(infer, huge)
    assert status == 422 and "NaN or Inf" in answer["error"], answer
    # a header length that Python's isdigit() takes but int() does not
    body = json.dumps(_body()).encode()
    head = f"POST /v2/models/gan/infer HTTP/1.1\r\nHost: {server.address}\r\nContent-Type: application/json\r\n"
    reply = _raw(
        server,
        head.encode()
        + f"{HEADER_LENGTH}: ".encode()
        + "²".encode("latin-1")
        + b"\r\n"
        + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
        + body,
    )
    assert reply.startswith(b"HTTP/1.1 400") and b"byte count" in reply, reply[:300]
    assert _metrics(server).get('ganport_requests_total{model="gan",status="500"}', 0) == 0
    _still_serving(server)


def test_cross_site_and_rebinding_requests_are_refused(server):
    infer = f"{server.url}/v2/models/gan/infer"
    body = json.dumps(_body()).encode()
    status, _, answer = call(infer, body, {"Content-Type": "text/plain"})
    assert status == 415 and b"application/json" in answer
    status, _, answer = call(infer, body, {"Origin": "https://evil.example"})
    assert status == 403 and b"Cross-site" in answer
    assert call(infer, body, {"Origin": server.url})[0] == 200  # the server's own page
    assert call(infer, body, {"Content-Type": "application/json; charset=utf-8"})[0] == 200
    status, _, answer = call(f"{server.url}/v2/health/ready", headers={"Host": "evil.example:8000"})
    assert status == 421 and b"--host 0.0.0.0" in answer
    port = _address(server)[1]
    assert call(f"{server.url}/v2/health/ready", headers={"Host": f"localhost:{port}"})[0] == 200


def test_a_client_leaving_mid_upload_is_counted_499_not_500(server):
    for _ in range(20):
        with socket.create_connection(_address(server)) as connection:
            connection.sendall(
                f"POST /v2/models/gan/infer HTTP/1.1\r\nHost: {server.address}\r\n"
                "Content-Type: application/json\r\nContent-Length: 400000\r\n\r\n".encode()
                + b"{" * 30000
            )
            time.sleep(0.02)
    _still_serving(server)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not _metrics(server).get('ganport_requests_total{model="gan",status="499"}'):
        time.sleep(0.1)
    metrics = _metrics(server)
    assert metrics.get('ganport_requests_total{model="gan",status="499"}', 0) >= 1, metrics
    assert metrics.get('ganport_requests_total{model="gan",status="500"}', 0) == 0


def test_headers_that_never_finish_are_cut(server):
    """A slowloris client sends a header line now and then, never the blank line: its connection is closed."""
    with socket.create_connection(_address(server), timeout=HEADER_SECONDS + 10) as connection:
        connection.sendall(f"GET /v2/health/live HTTP/1.1\r\nHost: {server.address}\r\n".encode())
        started = time.monotonic()
        closed = False
        while time.monotonic() - started < HEADER_SECONDS + 8:
            try:
                connection.sendall(b"X-Slow: 1\r\n")
                if connection.recv(1, socket.MSG_DONTWAIT) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(1)
        assert closed
    _still_serving(server)


def test_unfinished_bodies_are_bounded_in_memory(server):
    """Bodies that never finish cannot hold more than 8 x --max-body-mb: beyond, new ones get 503."""
    before = _rss_mb(server)
    sockets, answers = [], []
    try:
        for _ in range(16):
            connection = socket.create_connection(_address(server), timeout=5)
            connection.sendall(
                f"POST /v2/models/gan/infer HTTP/1.1\r\nHost: {server.address}\r\n"
                "Content-Type: application/json\r\nContent-Length: 500000\r\n\r\n".encode()
                + b" " * 450000
            )
            sockets.append(connection)
        time.sleep(1)
        grown = _rss_mb(server) - before
        for connection in sockets:
            connection.settimeout(0.5)
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                answers.append(connection.recv(4096))
    finally:
        for connection in sockets:
            connection.close()
    assert any(b"503" in answer.split(b"\r\n")[0] and b"too many request bodies" in answer for answer in answers)
    assert grown < RSS_GROWTH_MB, f"resident memory grew {grown:.0f} MB"
    _still_serving(server)


def test_a_gzip_bomb_and_a_connection_flood_stay_bounded(server):
    before = _rss_mb(server)
    bomb = gzip.compress(b" " * (256 * 2**20))
    status, _, answer = call(f"{server.url}/v2/models/gan/infer", bomb, {"Content-Encoding": "gzip"})
    assert status == 413 and b"inflated" in answer
    connections = [socket.create_connection(_address(server)) for _ in range(500)]
    try:
        _still_serving(server)  # 500 idle connections open: still answered
        grown = _rss_mb(server) - before
    finally:
        for connection in connections:
            connection.close()
    assert grown < RSS_GROWTH_MB, f"resident memory grew {grown:.0f} MB"


def test_sample_grids_go_through_the_queue_bound(server):
    status, _, answer = call(f"{server.url}/v2/models/gan/sample.png?n={MAX_QUEUE + 1}")
    assert status == 503 and b"busy" in answer
    status, headers, _ = call(f"{server.url}/v2/models/gan/sample.png?n={MAX_QUEUE}")
    assert status == 200 and headers["content-type"] == "image/png"


def _batcher(rows: int = 8):
    from ganport.serve import MicroBatcher, ServedModel
    from ganport.serve.batching import ServerMetrics

    model = ServedModel(MODELS / "mnist-gan" / "generator.onnx", "gan", device="cpu")
    return MicroBatcher(model, max_batch=rows, max_wait_ms=0, max_queue=4 * rows, metrics=ServerMetrics(rows))


def test_a_dead_batching_loop_fails_waiting_requests_and_readiness(monkeypatch):
    from ganport.serve.app import InferenceServer

    batcher = _batcher()
    server = InferenceServer([batcher.model])
    monkeypatch.setattr(server.batchers["gan"], "_take", lambda: 1 / 0)
    noise = np.zeros((1, 100), np.float32)

    async def scenario():
        dying = server.batchers["gan"]
        dying.start()
        with pytest.raises(ProtocolError) as waiting:
            await dying.infer({"z": noise}, 1)
        with pytest.raises(ProtocolError) as later:
            await dying.infer({"z": noise}, 1)
        ready = await server.ready(None)
        await dying.stop()
        return waiting.value, later.value, ready

    waiting, later, ready = asyncio.run(asyncio.wait_for(scenario(), 30))
    assert waiting.status == later.status == 503 and "ZeroDivisionError" in str(waiting) and "restart" in str(later)
    assert ready.status_code == 503 and b"batching loop stopped" in ready.body


def test_grid_work_of_a_client_that_left_never_runs():
    batcher = _batcher()
    release, ran = threading.Event(), []

    async def scenario():
        batcher.start()
        busy = asyncio.ensure_future(batcher.in_worker(release.wait))  # the worker thread is taken
        await asyncio.sleep(0.05)
        abandoned = asyncio.ensure_future(batcher.run_rows(8, lambda: ran.append(True)))
        await asyncio.sleep(0.05)
        abandoned.cancel()  # its client disconnected while it waited
        release.set()
        await busy
        await asyncio.sleep(0.1)
        rows_left = batcher._worker_rows
        await batcher.stop()
        return rows_left

    assert asyncio.run(asyncio.wait_for(scenario(), 30)) == 0
    assert ran == []


def test_requests_cut_by_the_end_of_the_drain_are_answered_503_and_counted(tmp_path):
    """An upload that never finishes outlives SIGTERM's drain: it gets 503 and the log says so, not "every request
    in flight was answered"."""
    model = tmp_path / "gan.onnx"
    shutil.copy(MODELS / "mnist-gan" / "generator.onnx", model)
    with (
        running_server(model, "--drain-seconds", 1) as running,
        socket.create_connection(_address(running), timeout=20) as connection,
    ):
        connection.sendall(
            f"POST /v2/models/gan/infer HTTP/1.1\r\nHost: {running.address}\r\n"
            "Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{".encode()
        )
        time.sleep(0.5)
        code = running.stop()
        answer = connection.recv(4096)
    log = "".join(running.output)
    assert code == 0, log
    assert answer.startswith(b"HTTP/1.1 503") and b"stopped before this request was answered" in answer, answer
    assert "1 request(s) still in flight after the 1 s drain were answered 503" in log, log
    assert "Traceback" not in log


def test_a_generator_failing_its_probe_is_served_as_a_plain_model_and_the_log_says_why(tmp_path):
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.full((100, 784), np.nan, np.float32), "weights")
    shape = numpy_helper.from_array(np.array([-1, 28, 28, 1], np.int64), "shape")
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["z", "weights"], ["flat"]),
            helper.make_node("Reshape", ["flat", "shape"], ["image"]),
        ],
        "nan-generator",
        [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 100])],
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["batch", 28, 28, 1])],
        [weights, shape],
    )
    model = tmp_path / "broken.onnx"
    onnx.save(helper.make_model(graph, ir_version=8, opset_imports=[helper.make_opsetid("", 17)]), model)
    with running_server(model) as running:
        assert call(f"{running.url}/v2/models/broken/sample.png")[0] == 404
    log = "".join(running.output)
    assert "model broken: model" in log and "(no sample grid:" in log and "NaN" in log, log
