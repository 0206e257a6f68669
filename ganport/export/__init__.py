"""Export a run or a Keras model file to ONNX, DL4J-ready HDF5 or native .keras, then validate what was written.

Re-exports only. The registries (formats, precisions) load without TensorFlow, so the CLI can list their choices;
the export functions load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from ganport.export.formats import DEFAULT_FORMAT, FORMATS, Format
from ganport.export.precision import FULL_PRECISION, PRECISIONS, Precision

_LAZY = {
    "export": "ganport.export.exporters",
    "ExportOptions": "ganport.export.job",
    "ExportedFile": "ganport.export.job",
    "QUALITY_DROP": "ganport.export.quality",
}

__all__ = ["DEFAULT_FORMAT", "FORMATS", "FULL_PRECISION", "PRECISIONS", "Format", "Precision", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ganport.export' has no attribute {name!r}")
