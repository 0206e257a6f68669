"""Numeric parity between a reference and a candidate backend, with explicit tolerances and shape rules.

Kept free of TensorFlow and onnxruntime so that every backend (Keras, onnxruntime, DL4J's JSON report) can share it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ganport.errors import ParityError

# Tolerances are data, declared once: export self-checks, fp32 backends in `ganport verify`, and DL4J's check.
EXPORT_ATOL = 1e-4
VERIFY_ATOL = 1e-5
REFERENCE_BATCH = 16
REFERENCE_SEED = 1234
# Relative differences are reported against max(|reference|, this floor), so values near zero do not explode.
RELATIVE_FLOOR = 1e-3


@dataclass(frozen=True)
class Comparison:
    model: str
    backend: str
    max_abs_diff: float
    max_rel_diff: float
    atol: float
    note: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_diff <= self.atol)

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.model} [{self.backend}]: max abs diff {self.max_abs_diff:.3g}, max rel diff "
            f"{self.max_rel_diff:.3g} (atol {self.atol:g}) {verdict}{note}"
        )


def reference_noise(latent_dim: int, batch: int = REFERENCE_BATCH, seed: int = REFERENCE_SEED) -> np.ndarray:
    """The fixed latent vectors every export and verification runs on."""
    return np.random.default_rng(seed).standard_normal((batch, latent_dim)).astype(np.float32)


def compare(model: str, backend: str, reference: np.ndarray, candidate: np.ndarray, atol: float) -> Comparison:
    """Compare two outputs element by element.

    Shapes must hold the same number of elements per sample: a candidate that dropped a trailing Reshape (DL4J's
    Sequential import gives [N, 784] for [N, 28, 28, 1]) is compared in flattened C order, explicitly.
    """
    reference = np.asarray(reference, dtype=np.float64)
    candidate = np.asarray(candidate, dtype=np.float64)
    if reference.shape != candidate.shape:
        if reference.shape[0] != candidate.shape[0] or reference[0].size != candidate[0].size:
            raise ParityError(
                f"{model} [{backend}]: output shape {list(candidate.shape)} cannot be matched with "
                f"the reference's {list(reference.shape)}."
            )
        reference = reference.reshape(len(reference), -1)
        candidate = candidate.reshape(len(candidate), -1)
    difference = np.abs(reference - candidate)
    if not np.all(np.isfinite(candidate)):
        return Comparison(model, backend, float("inf"), float("inf"), atol)
    relative = difference / np.maximum(np.abs(reference), RELATIVE_FLOOR)
    return Comparison(model, backend, float(difference.max()), float(relative.max()), atol)


def compare_outputs(
    model: str,
    backend: str,
    names: Sequence[str],
    references: Sequence[np.ndarray],
    candidates: Sequence[np.ndarray],
    atol: float,
) -> Comparison:
    """Compare every output of a model; the worst one is reported, named when there are several."""
    if len(references) != len(candidates):
        raise ParityError(
            f"{model} [{backend}]: {len(candidates)} outputs, expected {len(references)} ({', '.join(names)})."
        )
    comparisons = [
        compare(model, backend, reference, candidate, atol)
        for reference, candidate in zip(references, candidates, strict=True)
    ]
    worst = max(range(len(comparisons)), key=lambda index: comparisons[index].max_abs_diff)
    if len(comparisons) == 1:
        return comparisons[0]
    return replace(comparisons[worst], note=f"worst of {len(names)} outputs: {names[worst]}")


def require_all(comparisons: list[Comparison]) -> None:
    """Raise one ParityError that lists every failed comparison, so one run shows everything that is wrong."""
    failed = [comparison for comparison in comparisons if not comparison.passed]
    if failed:
        raise ParityError("Parity check failed: " + "; ".join(comparison.line() for comparison in failed))
