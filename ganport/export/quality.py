"""The gates of reduced-precision exports. Quality, for a generator of MNIST-sized images: a variant may not cost more
than QUALITY_DROP classifier score, nor (conditional generators) more than LABEL_ACCURACY_DROP label accuracy; for
any other model (critics, image-to-image, other generators), its outputs on the reference inputs must stay within
MIN_SQNR_DB of float32's. Speed: a precision sold as a CPU speed-up may not be slower than float32 at every batch
size timed.

The scorer is passed in (ExportOptions.score, normally ganport.evaluate.score_generator), so exporting never
imports the evaluation stage.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from ganport import onnx_io
from ganport.contract import GENERATOR, SCORED_IMAGE_SHAPE
from ganport.errors import QualityGateError
from ganport.export.job import Job
from ganport.export.precision import PRECISIONS
from ganport.host import provenance

# The largest classifier-score drop a reduced-precision export may cost before it is refused.
QUALITY_DROP = 0.1
# The largest label-accuracy drop (a share: 0.01 is one percentage point) allowed for a conditional generator.
LABEL_ACCURACY_DROP = 0.01
# The lowest signal-to-quantization-noise ratio (float32 outputs' power over the power of the variant's difference
# from them) a model the classifier cannot score may reach: 20 dB is an error of 10% of the outputs' RMS.
MIN_SQNR_DB = 20.0
# How long the speed gate times each batch size (both files, in turns), and its fewest calls per file.
SPEED_SECONDS = 0.5
SPEED_MIN_CALLS = 7


def reduced_precision_gates(baseline: Path, variant: Path, job: Job) -> dict[str, float]:
    """Every gate the job's precision has, on the fp32 file `baseline` and the `variant` written from it: what they
    measured, for the export's report."""
    scored = job.item.role is GENERATOR and job.reference[0].shape[1:] == SCORED_IMAGE_SHAPE
    measured = (quality_gate if scored else agreement_gate)(baseline, variant, job)
    if PRECISIONS[job.options.precision].cpu_speedup:
        measured.update(speed_gate(baseline, variant, job))
    return measured


def quality_gate(baseline: Path, variant: Path, job: Job) -> dict[str, float]:
    """Score the variant and the fp32 graph on the same noise; refuse a classifier-score drop over QUALITY_DROP."""
    item, options, log = job.item, job.options, job.log
    before = options.score(baseline)
    after = options.score(variant)
    quality = {
        "fp32_classifier_score": before.classifier_score,
        "classifier_score": after.classifier_score,
        "fp32_frechet_distance": before.frechet_distance,
        "frechet_distance": after.frechet_distance,
    }
    drop = before.classifier_score - after.classifier_score
    log(
        f"{item.stem} [{options.precision}]: classifier score {after.classifier_score:.3f} vs fp32 "
        f"{before.classifier_score:.3f} (drop {drop:+.3f}, limit {QUALITY_DROP}); Fréchet distance "
        f"{after.frechet_distance:.3f} vs {before.frechet_distance:.3f}"
    )
    problems = [f"drops the classifier score by {drop:.3f} (> {QUALITY_DROP})"] if drop > QUALITY_DROP else []
    if before.label_accuracy is not None:
        quality.update(fp32_label_accuracy=before.label_accuracy, label_accuracy=after.label_accuracy)
        accuracy_drop = before.label_accuracy - after.label_accuracy
        log(
            f"{item.stem} [{options.precision}]: label accuracy {100 * after.label_accuracy:.2f}% vs fp32 "
            f"{100 * before.label_accuracy:.2f}% (limit: {100 * LABEL_ACCURACY_DROP:g} points lower)"
        )
        if accuracy_drop > LABEL_ACCURACY_DROP:
            problems.append(
                f"drops label accuracy by {100 * accuracy_drop:.2f} points (> {100 * LABEL_ACCURACY_DROP:g})"
            )
    if problems and not options.force:
        raise QualityGateError(
            f"{options.precision} export of {item.stem} {' and '.join(problems)}; keep fp32, or pass --force to "
            "write it anyway."
        )
    return quality


def agreement_gate(baseline: Path, variant: Path, job: Job) -> dict[str, float]:
    """Run the variant and the fp32 file on the reference inputs (which calibration did not see); refuse a variant
    whose outputs' signal-to-quantization-noise ratio against fp32's is below MIN_SQNR_DB (the worst output)."""
    item, options, log = job.item, job.options, job.log
    before, after = (onnx_io.run(path, job.inputs, list(item.output_names)) for path in (baseline, variant))
    ratios = [_sqnr_db(expected, actual) for expected, actual in zip(before, after, strict=True)]
    worst = min(ratios)
    log(
        f"{item.stem} [{options.precision}]: outputs {worst:.1f} dB above their difference from fp32's on "
        f"{len(before[0])} reference inputs (limit {MIN_SQNR_DB:g} dB)"
    )
    if worst < MIN_SQNR_DB and not options.force:
        raise QualityGateError(
            f"{options.precision} export of {item.stem} moves its outputs too far from fp32's (signal-to-noise "
            f"{worst:.1f} dB < {MIN_SQNR_DB:g} dB); keep fp32, or pass --force to write it anyway."
        )
    return {"sqnr_db": worst}


def _sqnr_db(expected: np.ndarray, actual: np.ndarray) -> float:
    """10·log10 of the expected values' power over the power of the difference (infinite when they are equal)."""
    noise = float(np.sum(np.square(actual.astype(np.float64) - expected)))
    signal = float(np.sum(np.square(expected.astype(np.float64))))
    if noise == 0 or signal == 0:
        return float("inf") if noise == 0 else float("-inf")
    return float(10 * np.log10(signal / noise))


def speed_gate(baseline: Path, variant: Path, job: Job) -> dict[str, float]:
    """Time the variant against the fp32 file on this CPU at batch 1 and at the reference batch, calls in turns;
    refuse a variant slower at both, unless --force."""
    item, options, log = job.item, job.options, job.log
    sessions = [onnx_io.open_session(path, "cpu") for path in (baseline, variant)]
    batches = sorted({1, len(next(iter(job.inputs.values())))})
    speedups = {}
    for batch in batches:
        feeds = {name: np.resize(array, (batch, *array.shape[1:])) for name, array in job.inputs.items()}
        fp32_seconds, variant_seconds = seconds_in_turns(sessions, feeds)
        speedups[batch] = fp32_seconds / variant_seconds
    measured = ", ".join(f"{speedup:.2f}x at batch {batch}" for batch, speedup in speedups.items())
    machine = provenance({})
    log(
        f"{item.stem} [{options.precision}]: {measured} the speed of fp32 on this CPU ({machine['cpu']}, "
        f"{machine['isa']}, {machine['threads']} threads)"
    )
    if max(speedups.values()) < 1 and not options.force:
        raise QualityGateError(
            f"{options.precision} export of {item.stem} runs slower than fp32 on this CPU ({measured}); keep fp32, or "
            "pass --force to write it anyway."
        )
    return {f"speedup_batch_{batch}": speedup for batch, speedup in speedups.items()}


def seconds_in_turns(
    sessions: list[Any], feeds: dict[str, np.ndarray], seconds: float = SPEED_SECONDS, min_calls: int = SPEED_MIN_CALLS
) -> list[float]:
    """Each onnxruntime session's median seconds per call on `feeds`, after a warm-up call each, calls taken in turns
    for about `seconds` (at least `min_calls` each), so that every session shares whatever else the machine does."""
    for session in sessions:
        onnx_io.run(session, feeds)
    times: list[list[float]] = [[] for _ in sessions]
    end = time.perf_counter() + seconds
    while len(times[0]) < min_calls or time.perf_counter() < end:
        for session, taken in zip(sessions, times, strict=True):
            start = time.perf_counter()
            onnx_io.run(session, feeds)
            taken.append(time.perf_counter() - start)
    return [statistics.median(taken) for taken in times]
