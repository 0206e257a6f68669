"""How `ganport serve` listens and batches: defaults the CLI shows, without importing the server."""

from __future__ import annotations

from dataclasses import dataclass

from ganport.protocol import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_MB = 16.0
# Rows that may wait for a batch before requests are refused with 503, by default: eight full batches, and never
# fewer than DEFAULT_QUEUE_ROWS (with --max-batch 1, a few hundred waiting one-row requests are normal load).
QUEUE_BATCHES = 8
DEFAULT_QUEUE_ROWS = 2048


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_queue: int | None = None  # rows; None: see queue_rows
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    threads: int | None = None  # onnxruntime's threads per model; None: one per core

    @property
    def queue_rows(self) -> int:
        if self.max_queue is not None:
            return self.max_queue
        return max(DEFAULT_QUEUE_ROWS, QUEUE_BATCHES * self.max_batch)

    @property
    def max_body(self) -> int:
        return int(self.max_body_mb * 2**20)
