"""`ganport serve`: ONNX models over HTTP on the Open Inference Protocol, with dynamic micro-batching.

Re-exports only. The settings load without the web stack, so the CLI can show their defaults; the server loads on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ganport.serve.settings import DEFAULT_HOST, DEFAULT_MAX_BODY_MB, DEFAULT_PORT, QUEUE_BATCHES, ServeSettings

_LAZY = {
    "serve": "ganport.serve.app",
    "InferenceServer": "ganport.serve.app",
    "MicroBatcher": "ganport.serve.batching",
    "ServedModel": "ganport.serve.served",
}

__all__ = ["DEFAULT_HOST", "DEFAULT_MAX_BODY_MB", "DEFAULT_PORT", "QUEUE_BATCHES", "ServeSettings", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ganport.serve' has no attribute {name!r}")
