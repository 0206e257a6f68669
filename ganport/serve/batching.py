"""Dynamic micro-batching: requests for one model wait at most `max_wait` after the first of them arrived, are
concatenated up to `max_batch` rows and up to `batch_bytes` of memory while they run (rows of different models
differ in size a thousandfold), run as one onnxruntime call in a worker thread, and split back.

While a batch runs, the next one gathers, so under load batches fill without waiting. The queue is bounded in rows;
a full queue refuses at once (503) instead of letting latency grow without limit.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from ganport.budget import memory_budget
from ganport.files import size_text
from ganport.protocol import ProtocolError
from ganport.serve.served import ServedModel

T = TypeVar("T")
_LOG = logging.getLogger("uvicorn.error")  # the server's log: uvicorn prints its warnings and errors
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class ServerMetrics:
    """What `GET /metrics` shows, in a registry of its own (one per server, so tests can run several)."""

    def __init__(self, max_batch: int) -> None:
        self.registry = CollectorRegistry()
        sizes = [2**power for power in range(max_batch.bit_length()) if 2**power < max_batch] + [max_batch]
        self.batch_size = Histogram(
            "ganport_batch_size", "Rows per onnxruntime call", ["model"], buckets=sizes, registry=self.registry
        )
        self.batch_seconds = Histogram(
            "ganport_batch_seconds",
            "Time of one onnxruntime call",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "ganport_request_seconds",
            "Infer request time in the server: decoding, queueing, inference, encoding",
            ["model"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.requests = Counter(
            "ganport_requests", "Infer requests answered, by HTTP status", ["model", "status"], registry=self.registry
        )
        self.queued_rows = Gauge("ganport_queued_rows", "Rows waiting for a batch", ["model"], registry=self.registry)


@dataclass
class _Pending:
    inputs: dict[str, np.ndarray]
    rows: int
    bytes: int  # what its rows take while onnxruntime runs them
    future: asyncio.Future
    arrived: float


class MicroBatcher:
    """The queue and worker thread of one served model.

    Its loop is supervised: if it ever dies, every waiting request gets 503, later ones too, and `failure` says why
    (readiness turns 503 on it), instead of requests waiting forever for a loop that is gone.
    """

    def __init__(
        self,
        model: ServedModel,
        max_batch: int,
        max_wait_ms: float,
        max_queue: int,
        metrics: ServerMetrics,
        batch_bytes: int | None = None,
    ) -> None:
        """`batch_bytes`: the most memory one batch may take while it runs [default: half the memory budget]."""
        self.model, self.max_batch, self.max_wait, self.max_queue = model, max_batch, max_wait_ms / 1000, max_queue
        self.batch_bytes = batch_bytes if batch_bytes is not None else memory_budget() // 2
        self.failure: str | None = None
        self._queue: deque[_Pending] = deque()
        self._queued_rows = 0
        self._worker_rows = 0  # rows of run_rows work waiting for or on the worker thread
        self._executor = ThreadPoolExecutor(1, thread_name_prefix=f"onnxruntime-{model.name}")
        self._batch_size = metrics.batch_size.labels(model.name)
        self._batch_seconds = metrics.batch_seconds.labels(model.name)
        metrics.queued_rows.labels(model.name).set_function(lambda: self._queued_rows)
        self._wake: asyncio.Event | None = None
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._wake = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(self._serve(), name=f"batcher-{self.model.name}")
        self._task.add_done_callback(self._ended)

    def _ended(self, task: asyncio.Task) -> None:
        if task.cancelled():  # stop(): the server is shutting down
            return
        error = task.exception()
        self.failure = f"its batching loop stopped ({type(error).__name__}: {error})"
        _LOG.error("model %s cannot serve any more: %s; restart the server.", self.model.name, self.failure)
        unavailable = self._unavailable()
        for pending in self._queue:
            _settle(pending.future, exception=unavailable)
        self._queue.clear()
        self._queued_rows = 0

    def _unavailable(self) -> ProtocolError:
        return ProtocolError(f"{self.model.name} cannot serve: {self.failure}; the server needs a restart.", 503)

    def _reserve(self, rows: int) -> None:
        """Count `rows` against the queue's bound, or refuse: 503 when full or when the loop is gone."""
        if self.failure is not None:
            raise self._unavailable()
        waiting = self._queued_rows + self._worker_rows
        if waiting + rows > self.max_queue:
            raise ProtocolError(f"The server is busy ({waiting} rows queued); retry shortly.", status=503)

    async def stop(self) -> None:
        """After the server drained its requests: end the loop and the worker thread."""
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def infer(self, inputs: dict[str, np.ndarray], rows: int) -> dict[str, np.ndarray]:
        """The model's outputs for these rows, run in a batch with whatever else is queued."""
        if rows > self.max_batch:
            raise ProtocolError(
                f"A request may hold at most {self.max_batch} rows (the server's --max-batch). Received: {rows}; "
                "split it into several requests."
            )
        row_bytes = self.model.row_bytes(inputs)
        if rows * row_bytes > self.batch_bytes:
            raise ProtocolError(
                f"This request's {rows} rows would take {size_text(rows * row_bytes)} while the model runs them "
                f"({size_text(row_bytes)} each); the server runs at most {size_text(self.batch_bytes)} at once "
                f"(its memory budget). Send at most {self.batch_bytes // row_bytes} rows, or smaller inputs.",
                413,
            )
        self._reserve(rows)
        future = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(inputs, rows, rows * row_bytes, future, time.perf_counter()))
        self._queued_rows += rows
        if len(self._queue) == 1 or self._queued_rows >= self.max_batch:
            self._wake.set()
        return await future

    async def in_worker(self, function: Callable[[], T]) -> T:
        """Run `function` on the model's worker thread, between batches."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, function)

    async def run_rows(self, rows: int, function: Callable[[], T]) -> T:
        """Run `function`, work worth `rows` rows (a sample grid), on the worker thread between batches. It counts
        against the queue's bound as infer's rows do (503 when full), and is dropped if cancelled before it starts
        (its client went away)."""
        self._reserve(rows)
        self._worker_rows += rows
        try:
            return await self.in_worker(function)
        finally:
            self._worker_rows -= rows

    async def _serve(self) -> None:
        while True:
            while not self._queue:
                self._wake.clear()
                await self._wake.wait()
            deadline = self._queue[0].arrived + self.max_wait
            while self._queued_rows < self.max_batch and (remaining := deadline - time.perf_counter()) > 0:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), remaining)
                except TimeoutError:
                    break
            await self._run(self._take())

    def _take(self) -> list[_Pending]:
        batch, rows, taken = [], 0, 0
        while (
            self._queue
            and rows + self._queue[0].rows <= self.max_batch
            and taken + self._queue[0].bytes <= self.batch_bytes
        ):
            pending = self._queue.popleft()
            rows += pending.rows
            taken += pending.bytes
            batch.append(pending)
        self._queued_rows -= rows
        return batch

    async def _run(self, batch: list[_Pending]) -> None:
        batch = [pending for pending in batch if not pending.future.done()]  # the client went away
        if not batch:
            return
        started = time.perf_counter()
        try:
            # requests whose other axes differ (a model with dynamic ones) cannot be joined: they run one by one
            feeds = {name: np.concatenate([pending.inputs[name] for pending in batch]) for name in batch[0].inputs}
            outputs = await self.in_worker(lambda: self.model.run(feeds))
        except Exception as error:  # onnxruntime's own types; with several requests, find the one that fails
            if len(batch) > 1:
                for pending in batch:
                    await self._run([pending])
                return
            _settle(batch[0].future, exception=_inference_failed(error))
            return
        self._batch_seconds.observe(time.perf_counter() - started)
        self._batch_size.observe(len(feeds[next(iter(feeds))]))
        start = 0
        for pending in batch:
            end = start + pending.rows
            _settle(pending.future, {name: array[start:end] for name, array in outputs.items()})
            start = end


def _settle(future: asyncio.Future, result: Any = None, exception: BaseException | None = None) -> None:
    if future.done():
        return
    if exception is not None:
        future.set_exception(exception)
    else:
        future.set_result(result)


def _inference_failed(error: Exception) -> ProtocolError:
    reason = str(error).splitlines()[0] if str(error) else type(error).__name__
    return ProtocolError(f"onnxruntime could not run the model on this request ({reason}).", status=500)
