"""The HTTP server: the Open Inference Protocol's REST endpoints over Starlette and uvicorn, micro-batched
onnxruntime behind them, Prometheus metrics, and a page that draws samples.

Every bad request is answered 4xx with {"error": ...} and leaves the server serving; what a client holds is
bounded (serve/limits.py: header and body deadlines, connections, buffered bytes; the queue for infer and sample
grids alike), and the work of a client that went away is dropped. SIGTERM stops accepting, finishes the requests
in flight and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import socket
import string
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from importlib import resources
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import numpy as np
import orjson
import uvicorn
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from ganport import __version__
from ganport.budget import memory_budget
from ganport.contract import MAX_SEED
from ganport.errors import UsageError
from ganport.files import size_text
from ganport.images import grid_png
from ganport.protocol import (
    BINARY_TYPE,
    HEADER_LENGTH,
    JSON_TYPE,
    MODEL_VERSION,
    ProtocolError,
    decode_request,
    encode_response,
    response_size,
    triton_config,
)
from ganport.serve.batching import MicroBatcher, ServerMetrics
from ganport.serve.limits import BODY_SECONDS, HeaderDeadlineProtocol, RequestGuard, allowed_hosts, connection_limit
from ganport.serve.served import ServedModel, model_names
from ganport.serve.settings import DEFAULT_HOST, DEFAULT_PORT, ServeSettings
from ganport.stopping import exit_status, stop_signals

T = TypeVar("T")

MAX_SAMPLE_IMAGES = 256
SAMPLE_SCALE = 4
# How much of an oversized body is read and thrown away so that the client sees the 413.
DISCARD_BYTES = 256 * 2**20
# Shares of the memory budget: batches running in onnxruntime (split among the models), replies being encoded
# and sent (all together), and one reply (a dynamic-size upscaler's JSON reply can be hundreds of MB).
BATCH_SHARE, REPLIES_SHARE, REPLY_SHARE = 1 / 2, 1 / 2, 1 / 8
MIN_REPLY_BYTES = 64 * 2**20
# The status counted in the metrics for a request whose client went away before its answer (nginx's 499).
DISCONNECTED = 499


class InferenceServer:
    """Served models, their batchers and the metrics; `app` is the ASGI application."""

    def __init__(
        self,
        models: Sequence[ServedModel],
        settings: ServeSettings | None = None,
        hosts: frozenset[str] | None = None,
    ) -> None:
        """`hosts`: the Host header values answered (limits.allowed_hosts); None answers any."""
        self.settings = settings or ServeSettings()
        self.buffered = 0  # bytes of request bodies being received
        self.replying = 0  # bytes of replies being encoded or sent
        budget = memory_budget()
        self.reply_limit = max(MIN_REPLY_BYTES, int(budget * REPLY_SHARE))
        self.replies_limit = max(self.reply_limit, int(budget * REPLIES_SHARE))
        batch_bytes = int(budget * BATCH_SHARE) // max(1, len(models))
        self.unanswered = 0  # requests cut by the end of the shutdown drain
        self.models = {model.name: model for model in models}
        self.metrics = ServerMetrics(self.settings.max_batch)
        self.batchers = {
            model.name: MicroBatcher(
                model,
                self.settings.max_batch,
                self.settings.max_wait_ms,
                self.settings.queue_rows,
                self.metrics,
                batch_bytes,
            )
            for model in models
        }
        model_routes = [  # infer first: Starlette tries routes in order, and it is the one called thousands of times
            ("/infer", self.infer, ["POST"]),
            ("", self.model_metadata, ["GET"]),
            ("/ready", self.model_ready, ["GET"]),
            ("/config", self.model_config, ["GET"]),
        ]
        routes = [
            *[
                Route(f"/v2/models/{{name}}{version}{suffix}", endpoint, methods=methods)
                for suffix, endpoint, methods in model_routes
                for version in ("", "/versions/{version}")
            ],
            Route("/v2/models/{name}/sample.png", self.sample_png, methods=["GET"]),
            Route("/", self.page, methods=["GET"]),
            Route("/metrics", self.prometheus, methods=["GET"]),
            Route("/v2", self.server_metadata, methods=["GET"]),
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
        ]
        starlette = Starlette(
            routes=routes,
            lifespan=self._lifespan,
            exception_handlers={ProtocolError: _protocol_error, HTTPException: _http_error, Exception: _server_error},
        )
        self.app = RequestGuard(starlette, hosts)

    @contextlib.asynccontextmanager
    async def _lifespan(self, app: Starlette) -> AsyncIterator[None]:
        for batcher in self.batchers.values():
            batcher.start()
        yield
        for batcher in self.batchers.values():
            await batcher.stop()

    def _model(self, request: Request) -> ServedModel:
        name = request.path_params["name"]
        version = request.path_params.get("version", MODEL_VERSION)
        if name not in self.models or version != MODEL_VERSION:
            served = ", ".join(self.models)
            raise ProtocolError(f"No model {name!r} version {version!r} here; served: {served} (version 1).", 404)
        return self.models[name]

    async def live(self, request: Request) -> Response:
        return Response(status_code=200)

    async def ready(self, request: Request) -> Response:
        failed = [f"{name}: {batcher.failure}" for name, batcher in self.batchers.items() if batcher.failure]
        if failed:
            return JSONResponse({"error": "; ".join(failed)}, status_code=503)
        return Response(status_code=200)

    async def server_metadata(self, request: Request) -> Response:
        return JSONResponse({"name": "ganport", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def model_metadata(self, request: Request) -> Response:
        return JSONResponse(self._model(request).metadata())

    async def model_ready(self, request: Request) -> Response:
        failure = self.batchers[self._model(request).name].failure
        if failure:
            return JSONResponse({"error": failure}, status_code=503)
        return Response(status_code=200)

    async def model_config(self, request: Request) -> Response:
        model = self._model(request)
        settings = self.settings
        config = triton_config(model.name, model.inputs, model.outputs, settings.max_batch, settings.max_wait_ms)
        return JSONResponse(config)

    async def infer(self, request: Request) -> Response:
        model = self._model(request)
        status = 500
        with self.metrics.request_seconds.labels(model.name).time():
            try:
                body = await self._read_body(request)
                decoded = decode_request(body, _header_length(request), model.inputs, model.outputs)
                model.check(decoded.inputs)
                batched = self.batchers[model.name].infer(decoded.inputs, decoded.rows)
                outputs = await _unless_disconnected(request, batched)
                _require_finite(outputs, decoded.outputs)
                size = self._reserve_reply(response_size(decoded, outputs))
                try:
                    content, json_length = encode_response(model.name, decoded, outputs, model.outputs)
                except BaseException:
                    self._release_reply(size)
                    raise
                status = 200
            except ProtocolError as error:
                status = error.status
                raise
            except ClientDisconnect:  # nobody to answer; counted as such, not as a server error
                status = DISCONNECTED
                return Response(status_code=DISCONNECTED)
            except asyncio.CancelledError:  # the shutdown's drain ended first
                status = 503
                return self._stopped_before_answer()
            finally:
                self.metrics.requests.labels(model.name, str(status)).inc()
        release = BackgroundTask(self._release_reply, size)  # once the reply is sent (or its client went away)
        if json_length is None:
            return Response(content, media_type=JSON_TYPE, background=release)
        return Response(content, media_type=BINARY_TYPE, headers={HEADER_LENGTH: str(json_length)}, background=release)

    def _reserve_reply(self, size: int) -> int:
        """Count a reply of `size` bytes against the replies' share of the memory budget, or refuse it: 413 when it
        alone is too large, 503 while the replies being sent hold too much."""
        if size > self.reply_limit:
            raise ProtocolError(
                f"The reply would take {size_text(size)}, over the server's limit of {size_text(self.reply_limit)} "
                "(its memory budget); ask for binary outputs (parameters.binary_data_output), fewer rows or "
                "smaller inputs.",
                413,
            )
        if self.replying + size > self.replies_limit:
            raise ProtocolError("The server is sending too many large replies; retry shortly.", 503)
        self.replying += size
        return size

    def _release_reply(self, size: int) -> None:
        self.replying -= size

    async def sample_png(self, request: Request) -> Response:
        model = self._model(request)
        generator = model.generator
        if generator is None:
            raise ProtocolError(f"{model.name} is not a generator, so it has no sample grid.", 404)
        query = request.query_params
        n = _int_parameter(query, "n", 16, 1, MAX_SAMPLE_IMAGES)
        seed = _int_parameter(query, "seed", 0, 0, MAX_SEED)
        label = None
        if "label" in query:
            if not model.conditional:
                raise ProtocolError(f"{model.name} is unconditional: it takes no label; drop label=.")
            label = _int_parameter(query, "label", 0, 0, generator.classes - 1)
        try:
            images = await _unless_disconnected(
                request,
                self.batchers[model.name].run_rows(n, lambda: generator.sample(n, seed=seed, uint8=True, labels=label)),
            )
        except ClientDisconnect:
            return Response(status_code=DISCONNECTED)
        except asyncio.CancelledError:
            return self._stopped_before_answer()
        return Response(
            grid_png(images, scale=SAMPLE_SCALE), media_type="image/png", headers={"Cache-Control": "no-store"}
        )

    async def page(self, request: Request) -> Response:
        generators = [
            {"name": model.name, "conditional": model.conditional, "classes": model.generator.classes}
            for model in self.models.values()
            if model.generator is not None
        ]
        # "<" escaped, so no model name can close the script element
        models = orjson.dumps(generators).decode().replace("<", "\\u003c")
        return HTMLResponse(string.Template(_page_template()).substitute(models=models))

    async def prometheus(self, request: Request) -> Response:
        return Response(generate_latest(self.metrics.registry), media_type=CONTENT_TYPE_LATEST)

    def _stopped_before_answer(self) -> Response:
        self.unanswered += 1
        return JSONResponse({"error": "The server stopped before this request was answered; retry."}, 503)

    async def _read_body(self, request: Request) -> bytes:
        """The request body, inflated when gzip or deflate encoded; 413 once it (or its inflated form) passes
        --max-body-mb, 408 when it takes over BODY_SECONDS, 503 while the bodies arriving at once hold more than
        settings.max_buffered bytes (slow uploads cannot fill the memory).

        The rest of an oversized body is read and thrown away, up to DISCARD_BYTES, so that the client reads the 413
        rather than a reset connection (nginx's "lingering close").
        """
        limit = self.settings.max_body
        chunks, size, held = [], 0, 0
        try:
            async with asyncio.timeout(BODY_SECONDS):
                async for chunk in request.stream():
                    size += len(chunk)
                    if size <= limit:
                        if self.buffered + len(chunk) > self.settings.max_buffered:
                            raise ProtocolError("The server is receiving too many request bodies; retry shortly.", 503)
                        self.buffered += len(chunk)
                        held += len(chunk)
                        chunks.append(chunk)
                    elif size > DISCARD_BYTES:
                        break
        except TimeoutError:
            raise ProtocolError(f"The request body did not arrive within {BODY_SECONDS:g} s.", 408) from None
        finally:
            self.buffered -= held
        if size > limit:
            raise ProtocolError(f"The request body is over the server's limit of {limit} bytes (--max-body-mb).", 413)
        return _inflate(b"".join(chunks), request.headers.get("content-encoding", "identity"), limit)


def _page_template() -> str:
    return resources.files("ganport.serve").joinpath("page.html").read_text(encoding="utf-8")


def _int_parameter(query: Any, name: str, default: int, low: int, high: int) -> int:
    text = query.get(name)
    if text is None:
        return default
    if not text.isascii() or not text.isdigit() or not low <= int(text) <= high:
        raise ProtocolError(f"{name} must be an integer from {low} to {high}. Received: {name}={text!r}")
    return int(text)


def _header_length(request: Request) -> int | None:
    text = request.headers.get(HEADER_LENGTH)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise ProtocolError(f"{HEADER_LENGTH} must be a byte count. Received: {text!r}")
    return int(text)


async def _unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result, unless the client disconnects first: then `work` is cancelled (a queued request is dropped
    from its batch, a sample grid not yet started never runs) and ClientDisconnect raised."""
    working = asyncio.ensure_future(work)
    watching = asyncio.ensure_future(_disconnect(request))
    try:
        done, _ = await asyncio.wait((working, watching), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watching.cancel()
        if not working.done():
            working.cancel()
    if working not in done:
        raise ClientDisconnect
    return working.result()


async def _disconnect(request: Request) -> None:
    """Returns when the client has gone away (the body has been read: the server's next message is the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _require_finite(outputs: dict[str, Any], names: Sequence[str]) -> None:
    """Finite numbers are all an answer may hold: JSON cannot carry NaN (it would become null) and no client expects
    it in binary."""
    for name in names:
        array = outputs[name]
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise ProtocolError(
                f"The model's output {name} is NaN or Inf for this request: its inputs are far outside the values "
                "it was trained on (noise is standard normal); send smaller numbers.",
                422,
            )


def _inflate(body: bytes, content_encoding: str, limit: int) -> bytes:
    encoding = content_encoding.strip().lower()
    if encoding == "identity":
        return body
    if encoding not in ("gzip", "deflate"):
        raise ProtocolError(f"Content-Encoding {encoding!r} is not supported; send identity, gzip or deflate.", 415)
    inflater = zlib.decompressobj(wbits=31 if encoding == "gzip" else 15)
    try:
        inflated = inflater.decompress(body, limit + 1)
    except zlib.error as error:
        raise ProtocolError(f"The body is not valid {encoding} ({error}).") from None
    if len(inflated) > limit or inflater.unconsumed_tail:
        raise ProtocolError(f"The inflated body is over the server's limit of {limit} bytes (--max-body-mb).", 413)
    return inflated


async def _protocol_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ProtocolError)
    return JSONResponse({"error": str(error)}, status_code=error.status)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    return JSONResponse(
        {"error": f"{error.detail}: {request.method} {request.url.path}"}, status_code=error.status_code
    )


async def _server_error(request: Request, error: Exception) -> Response:
    return JSONResponse({"error": f"internal error ({type(error).__name__}: {error})"}, status_code=500)


class DrainingServer(uvicorn.Server):
    """uvicorn's server under ganport's stop policy: SIGINT and SIGTERM start its graceful shutdown, which is not
    followed by re-raising the signal as uvicorn does (a process killed by SIGTERM reads as a crash to supervisors);
    `signals` tells which ones came."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.signals: list[int] = []

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with stop_signals(self.handle_exit):
            yield

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        self.signals.append(sig)


def serve(
    paths: Sequence[str | Path],
    name: str | None = None,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    device: str = "auto",
    settings: ServeSettings | None = None,
    log: Callable[[str], None] = print,
) -> int:
    """Serve ONNX models until SIGTERM (exit status 0) or SIGINT (130), draining requests in flight."""
    paths = [Path(path) for path in paths]
    names = model_names(paths, name)
    settings = settings or ServeSettings()
    models = [
        ServedModel(path, model_name, device, settings.threads) for path, model_name in zip(paths, names, strict=True)
    ]
    listener = _listen(host, port)
    server_app = InferenceServer(models, settings, allowed_hosts(listener.getsockname()[0]))
    bound_host, bound_port = listener.getsockname()[:2]
    shown_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    for model in models:
        kind = "conditional generator" if model.conditional else "generator" if model.generator else "model"
        why = f" (no sample grid: {model.not_a_generator})" if model.not_a_generator else ""
        log(f"model {model.name}: {kind} {model.path} on {model.provider}{why}")
    log(
        f"serving on http://{shown_host}:{bound_port}/ (max batch {settings.max_batch}, "
        f"max wait {settings.max_wait_ms:g} ms); Ctrl-C or SIGTERM finishes requests in flight and stops"
    )
    config = uvicorn.Config(
        server_app.app,
        log_level="warning",
        access_log=False,
        http=HeaderDeadlineProtocol,
        limit_concurrency=connection_limit(),
        loop="uvloop" if _has_uvloop() else "asyncio",
        lifespan="on",
        timeout_graceful_shutdown=settings.drain_seconds,
        proxy_headers=False,  # no proxy in front by default: nothing to trust X-Forwarded-* from
    )
    server = DrainingServer(config)
    server.run(sockets=[listener])
    if server_app.unanswered:
        log(
            f"stopped: {server_app.unanswered} request(s) still in flight after the {settings.drain_seconds:g} s "
            "drain were answered 503"
        )
    else:
        log("stopped: every request in flight was answered")
    return exit_status(signal.SIGINT) if signal.SIGINT in server.signals else 0


def _has_uvloop() -> bool:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return False
    return True


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        listener.bind((host, port))
    except OSError as error:
        listener.close()
        raise UsageError(f"Cannot listen on {host}:{port} ({error.strerror}); pass another --port or --host.") from None
    listener.listen(2048)
    listener.set_inheritable(True)
    return listener
