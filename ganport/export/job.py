"""What an export is asked to do and what it reports: shared by the export driver and every format's writer."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ganport.export.precision import FULL_PRECISION, PRECISIONS
from ganport.export.sources import SourceModel
from ganport.parity import Comparison, Float64Errors, against_float64, compare_outputs, float64_errors, require_all


@dataclass(frozen=True)
class ExportOptions:
    """How to export: ONNX precision, BatchNorm folding, the quality gate's scorer, whether to override it, and for
    a Triton model whether to add a GPU instance group and whether to replace an existing version.

    `score(model.onnx)` returns sample metrics with `classifier_score` and `frechet_distance` (the CLI passes
    ganport.evaluate.score_generator); reduced precisions need it.
    """

    precision: str = FULL_PRECISION
    fold_batch_norm: bool = True
    force: bool = False
    score: Callable[[Path], Any] | None = None
    gpu: bool = False
    overwrite: bool = False
    # The sizes of the inputs' dynamic axes (a fully convolutional model's height and width; --input-shape): where
    # the checks run, and what a DL4J file is written with. None: ganport's two check sizes, and no DL4J file.
    input_sizes: tuple[int, ...] | None = None


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
    inputs: dict[str, np.ndarray]  # by input name, in the model's input order
    reference: list[np.ndarray]  # the Keras model's outputs on `inputs`, in output order
    options: ExportOptions
    log: Callable[[str], None]
    # For a model of dynamic size: the same job at each further size its file is checked at.
    at_other_sizes: tuple[Job, ...] = ()
    # What a reduced precision calibrates on (batches of inputs by name, other than `inputs`); empty in fp32.
    calibration: tuple[dict[str, np.ndarray], ...] = ()

    @property
    def input_list(self) -> list[np.ndarray]:
        return list(self.inputs.values())

    def compare_everywhere(self, backend: str, run: Callable[[dict[str, np.ndarray]], list[np.ndarray]]) -> Comparison:
        """`run(inputs)` (the written file's outputs) compared at this job's inputs and, for a model of dynamic size,
        at every further size; the first comparison is reported, any failure raises."""
        for other in self.at_other_sizes:
            other.compare(f"{backend} at {_sizes_text(other)}", run(other.inputs))
        return self.compare(backend, run(self.inputs))

    def compare(self, backend: str, outputs: list[np.ndarray]) -> Comparison:
        """This file's outputs against the Keras model's, within the precision's bound; raises when outside it. A
        full-precision file outside the static rule is held to the deep-model rule against the float64 truth
        (ganport.parity), which deep models need."""
        names = self.item.output_names
        comparison = compare_outputs(self.item.stem, backend, names, self.reference, outputs, self.tolerance)
        if not comparison.passed and not PRECISIONS[self.options.precision].reduced:
            comparison = against_float64(comparison, names, self.truth, self.float64_errors, outputs)
        require_all([comparison])
        return comparison

    @functools.cached_property
    def truth(self) -> list[np.ndarray]:
        """The model's outputs on the fixed inputs, computed in float64 (graph.float64_outputs)."""
        from ganport.export.graph import float64_outputs

        return float64_outputs(self.item.graph, self.input_list)

    @functools.cached_property
    def float64_errors(self) -> Float64Errors:
        """Keras float32's own error against the float64 truth, per output."""
        return float64_errors(self.reference, self.truth)

    @property
    def tolerance(self) -> float:
        """The parity bound this file must meet per unit of output scale: its precision's atol plus the model's
        float32 summation spread (ganport.parity)."""
        return self.item.graph.accumulation().tolerance(PRECISIONS[self.options.precision].atol)


def _sizes_text(job: Job) -> str:
    """The shape of a job's main input, without the batch: 96x80x3."""
    return "x".join(str(side) for side in next(iter(job.inputs.values())).shape[1:])
