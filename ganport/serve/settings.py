"""How `ganport serve` listens and batches: defaults and limits the CLI shows, without importing the server.

Every number a user sets has a finite range, checked here once (the CLI's options take the same bounds), so no
setting can exhaust the machine (threads), never answer (waits) or overflow (sizes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from ganport.errors import UsageError
from ganport.protocol import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_MB = 16.0
# Seconds a SIGTERM waits for requests in flight before answering the rest 503 (Kubernetes allows 30 by default).
DEFAULT_DRAIN_SECONDS = 30.0
MAX_DRAIN_SECONDS = 3600.0
# Rows that may wait for a batch before requests are refused with 503, by default: eight full batches, and never
# fewer than DEFAULT_QUEUE_ROWS (with --max-batch 1, a few hundred waiting one-row requests are normal load).
QUEUE_BATCHES = 8
DEFAULT_QUEUE_ROWS = 2048
# Request bodies that may be arriving at once, in units of the largest body, before new ones get 503.
BUFFERED_BODIES = 8
# The ranges of the settings: beyond them a server helps nobody and can hurt the machine.
MAX_BATCH_ROWS = 65536
MAX_QUEUE_ROWS = 2**20
MAX_WAIT_MS = 10_000.0
MAX_BODY_MB = 256.0
MIN_BODY_MB = 0.001
THREADS_PER_CORE = 4


def cores() -> int:
    """The cores this process may run on (its affinity mask, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


MAX_THREADS = THREADS_PER_CORE * cores()


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_queue: int | None = None  # rows; None: see queue_rows
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    threads: int | None = None  # onnxruntime's threads per model; None: one per core
    drain_seconds: float = DEFAULT_DRAIN_SECONDS

    def __post_init__(self) -> None:
        ranges = (
            ("--max-batch", self.max_batch, 1, MAX_BATCH_ROWS),
            ("--max-wait-ms", self.max_wait_ms, 0, MAX_WAIT_MS),
            ("--max-queue", self.queue_rows, self.max_batch, MAX_QUEUE_ROWS),  # at least --max-batch
            ("--max-body-mb", self.max_body_mb, MIN_BODY_MB, MAX_BODY_MB),
            ("--threads", self.threads or 1, 1, MAX_THREADS),
            ("--drain-seconds", self.drain_seconds, 0, MAX_DRAIN_SECONDS),
        )
        for option, value, low, high in ranges:
            if not low <= value <= high:  # also false for NaN
                raise UsageError(f"{option} must be from {_number(low)} to {_number(high)}. Received: {value}")

    @property
    def queue_rows(self) -> int:
        if self.max_queue is not None:
            return self.max_queue
        return max(DEFAULT_QUEUE_ROWS, QUEUE_BATCHES * self.max_batch)

    @property
    def max_body(self) -> int:
        return int(self.max_body_mb * 2**20)

    @property
    def max_buffered(self) -> int:
        """Bytes of request bodies the server holds while they arrive."""
        return BUFFERED_BODIES * self.max_body


def _number(value: float) -> str:
    return f"{int(value):,}" if float(value).is_integer() else f"{value:g}"
