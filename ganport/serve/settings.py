"""How `ganport serve` listens and batches: defaults the CLI shows, without importing the server."""

from __future__ import annotations

from dataclasses import dataclass

from ganport.protocol import DEFAULT_MAX_BATCH, DEFAULT_MAX_WAIT_MS

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_BODY_MB = 16.0
# Rows that may wait for a batch before requests are refused with 503, by default: a few full batches.
QUEUE_BATCHES = 8


@dataclass(frozen=True)
class ServeSettings:
    max_batch: int = DEFAULT_MAX_BATCH
    max_wait_ms: float = DEFAULT_MAX_WAIT_MS
    max_queue: int | None = None  # rows; None: QUEUE_BATCHES full batches
    max_body_mb: float = DEFAULT_MAX_BODY_MB

    @property
    def queue_rows(self) -> int:
        return self.max_queue if self.max_queue is not None else QUEUE_BATCHES * self.max_batch

    @property
    def max_body(self) -> int:
        return int(self.max_body_mb * 2**20)
