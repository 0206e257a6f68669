"""What an export is asked to do and what it reports: shared by the export driver and every format's writer."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganport.export.precision import FULL_PRECISION, PRECISIONS
from ganport.export.sources import SourceModel
from ganport.parity import Comparison


@dataclass(frozen=True)
class ExportOptions:
    """How to export: ONNX precision, BatchNorm folding, the quality gate's scorer, and whether to override it.

    `score(model.onnx)` returns sample metrics with `classifier_score` and `frechet_distance` (the CLI passes
    ganport.evaluate.score_generator); reduced precisions need it.
    """

    precision: str = FULL_PRECISION
    fold_batch_norm: bool = True
    force: bool = False
    score: Callable[[Path], Any] | None = None


@dataclass(frozen=True)
class ExportedFile:
    path: Path
    role: str
    format: str
    comparison: Comparison
    test_vectors: Path | None = None
    quality: dict[str, float] | None = None


@dataclass(frozen=True)
class Job:
    """One model to write in one format: what every writer needs."""

    item: SourceModel
    target: Path
    inputs: np.ndarray
    reference: np.ndarray
    options: ExportOptions
    log: Callable[[str], None]

    @property
    def atol(self) -> float:
        """The parity bound this file must meet: its precision's."""
        return PRECISIONS[self.options.precision].atol
