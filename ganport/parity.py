"""Numeric parity between a reference and a candidate backend: one rule for every float32 comparison, and shape rules.

The rule. Two correct float32 implementations of a model do not give the same bits: each sums its products in its
own order (oneDNN's blocking for the CPU's ISA, cache sizes and threads; MLAS in onnxruntime; libnd4j in DL4J), and
each addition rounds. A K-term sum's rounding errors add up like a random walk, about sqrt(K) ulps of the running
magnitude, and two implementations each carry their own, so they sit sqrt(K) times FLOAT32_EPSILON apart relative to
the values summed; L summing layers in a row add their shares. The bound a comparison must meet is therefore

    (atol + L * sqrt(K) * FLOAT32_EPSILON) * max(1, max |reference|)

with K the model's longest sum (a Dense layer's inputs, a convolution's kh * kw * input channels), L its summing
layers, and atol = 1e-5 for what is not a sum (tanh, sigmoid and exp differ by a few ulps between libraries). It
holds whether the reference was computed a moment ago on this machine (export's self-check) or stored on another
CPU (verify on shipped models or a copied folder, DL4J), because the kernels differ in both cases. A changed weight
moves the output by far more than rounding does; a weight changed by less (one ulp) is caught by the weights'
digests stored with the test vectors, not by this bound.

Deep models amplify rounding beyond what the static rule counts: BatchNorm's scaling and twenty-odd convolutions
(a 256x256 encoder-decoder) leave Keras's own float32 output 1e-4 away from the exact result, so every other float32
backend is that far from Keras too. There the static rule is only the fast path: the model is evaluated in float64
with the same weights (the truth, ganport.export.graph.float64_outputs), and a backend passes when its error against
the truth is at most FLOAT64_FACTOR times Keras float32's own error, plus atol. Both numbers are reported. A weight
changed by 1e-3 relative moves the output a thousand times more than rounding does, and still fails.

Kept free of TensorFlow and onnxruntime so that every backend (Keras, onnxruntime, DL4J's JSON report) can share it;
the machine a number was computed on is ganport.host's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from ganport.errors import ParityError

ATOL = 1e-5
FLOAT32_EPSILON = float(np.finfo(np.float32).eps)  # 2**-23: one ulp at 1.0
REFERENCE_BATCH = 16
REFERENCE_SEED = 1234
# Relative differences are reported against max(|reference|, this floor), so values near zero do not explode.
RELATIVE_FLOOR = 1e-3


@dataclass(frozen=True)
class Accumulation:
    """How much float32 summation a model does: how many of its layers sum products, and its longest sum."""

    layers: int = 0
    longest: int = 0

    @property
    def spread(self) -> float:
        """The relative difference summation order alone can make at the output (the module's docstring says why)."""
        return self.layers * math.sqrt(self.longest) * FLOAT32_EPSILON

    def tolerance(self, atol: float = ATOL) -> float:
        """The bound per unit of output scale: atol plus the summation spread."""
        return atol + self.spread

    def describe(self) -> str:
        return f"{self.layers} summing layers, longest sum {self.longest}"


def scale(reference: np.ndarray) -> float:
    """What a tolerance is multiplied by: the reference's largest magnitude, at least 1."""
    finite = np.abs(reference[np.isfinite(reference)])
    return max(1.0, float(finite.max())) if finite.size else 1.0


# A float32 backend's error against the float64 truth may be this many times Keras float32's own: two float32
# implementations summing in different orders make errors of the same size, each of either sign.
FLOAT64_FACTOR = 4.0
# What a stored Keras float32 error (from test vectors, when no Keras model is at hand to recompute it) may widen the
# static rule's bound to at most: a tampered file cannot make it accept anything.
STORED_ERROR_CEILING = 10.0


@dataclass(frozen=True)
class Float64Errors:
    """Keras float32's own error against the float64 truth, per output (max abs), and each truth's scale."""

    keras: tuple[float, ...]
    scales: tuple[float, ...]


def float64_errors(references: Sequence[np.ndarray], truths: Sequence[np.ndarray]) -> Float64Errors:
    errors = [
        float(np.max(np.abs(np.asarray(reference, np.float64) - truth), initial=0.0))
        for reference, truth in zip(references, truths, strict=True)
    ]
    return Float64Errors(tuple(errors), tuple(scale(truth) for truth in truths))


def against_float64(
    comparison: Comparison,
    names: Sequence[str],
    truths: Sequence[np.ndarray] | None,
    errors: Float64Errors,
    candidates: Sequence[np.ndarray] | None = None,
    atol: float = ATOL,
    ceiling: float | None = None,
) -> Comparison:
    """The deep-model rule (module docstring) for a comparison that failed the static rule: each candidate output's
    error against the float64 truth within FLOAT64_FACTOR times Keras float32's own plus atol. Without the
    candidates themselves (DL4J reports numbers only), their error is bounded by the triangle inequality: the
    difference from Keras float32 plus Keras float32's error. `ceiling` caps the bound at that many times the static
    one (errors read from a file rather than computed)."""
    worst = None
    for index, name in enumerate(names):
        if candidates is not None and truths is not None:
            error = float(np.max(np.abs(np.asarray(candidates[index], np.float64) - truths[index]), initial=0.0))
        else:
            error = comparison.max_abs_diff + errors.keras[index]
        bound = FLOAT64_FACTOR * errors.keras[index] + atol * errors.scales[index]
        if ceiling is not None:
            bound = min(bound, ceiling * comparison.bound)
        margin = error - bound
        if worst is None or margin > worst[0]:
            worst = (margin, name, error, bound, errors.keras[index])
    _, name, error, bound, keras_error = worst
    named = f" ({name})" if len(names) > 1 else ""
    note = (
        f"against float64 Keras{named}: Keras float32 is off by {keras_error:.3g}; static bound {comparison.bound:.3g}"
        f" for the {comparison.max_abs_diff:.3g} from Keras float32"
    )
    return replace(comparison, max_abs_diff=error, bound=bound, note=note)


@dataclass(frozen=True)
class Comparison:
    model: str
    backend: str
    max_abs_diff: float
    max_rel_diff: float
    bound: float
    note: str = ""
    origin: str = ""  # where the reference was computed, when it was stored elsewhere

    @property
    def passed(self) -> bool:
        return bool(self.max_abs_diff <= self.bound)

    def line(self) -> str:
        verdict = "ok" if self.passed else "FAILED"
        note = f" ({self.note})" if self.note else ""
        return (
            f"{self.model} [{self.backend}]: max abs diff {self.max_abs_diff:.3g}, max rel diff "
            f"{self.max_rel_diff:.3g} (bound {self.bound:.3g}) {verdict}{note}"
        )


def reference_noise(latent_dim: int, batch: int = REFERENCE_BATCH, seed: int = REFERENCE_SEED) -> np.ndarray:
    """The fixed latent vectors every export and verification runs on."""
    return np.random.default_rng(seed).standard_normal((batch, latent_dim)).astype(np.float32)


def compare(model: str, backend: str, reference: np.ndarray, candidate: np.ndarray, tolerance: float) -> Comparison:
    """Compare two outputs element by element, within `tolerance` times the reference's scale.

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
    bound = tolerance * scale(reference)
    difference = np.abs(reference - candidate)
    if not np.all(np.isfinite(candidate)):
        return Comparison(model, backend, float("inf"), float("inf"), bound)
    relative = difference / np.maximum(np.abs(reference), RELATIVE_FLOOR)
    return Comparison(model, backend, float(difference.max()), float(relative.max()), bound)


def compare_outputs(
    model: str,
    backend: str,
    names: Sequence[str],
    references: Sequence[np.ndarray],
    candidates: Sequence[np.ndarray],
    tolerance: float,
) -> Comparison:
    """Compare every output of a model; the worst one (furthest past, or least within, its bound) is reported, named
    when there are several."""
    if len(references) != len(candidates):
        raise ParityError(
            f"{model} [{backend}]: {len(candidates)} outputs, expected {len(references)} ({', '.join(names)})."
        )
    comparisons = [
        compare(model, backend, reference, candidate, tolerance)
        for reference, candidate in zip(references, candidates, strict=True)
    ]
    worst = max(range(len(comparisons)), key=lambda index: comparisons[index].max_abs_diff - comparisons[index].bound)
    if len(comparisons) == 1:
        return comparisons[0]
    return replace(comparisons[worst], note=f"worst of {len(names)} outputs: {names[worst]}")


def require_all(comparisons: list[Comparison]) -> None:
    """Raise one ParityError that lists every failed comparison, so one run shows everything that is wrong."""
    failed = [comparison for comparison in comparisons if not comparison.passed]
    if failed:
        raise ParityError("Parity check failed: " + "; ".join(comparison.line() for comparison in failed))
