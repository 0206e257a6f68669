"""The quality gate of reduced-precision exports: a variant may not cost more than QUALITY_DROP classifier score, nor
(conditional generators) more than LABEL_ACCURACY_DROP label accuracy.

The scorer is passed in (ExportOptions.score, normally ganport.evaluate.score_generator), so exporting never
imports the evaluation stage.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from ganport.errors import QualityGateError
from ganport.export.job import Job

# The largest classifier-score drop a reduced-precision export may cost before it is refused.
QUALITY_DROP = 0.1
# The largest label-accuracy drop (a share: 0.01 is one percentage point) allowed for a conditional generator.
LABEL_ACCURACY_DROP = 0.01


def quality_gate(fp32: Any, variant: Path, job: Job) -> dict[str, float]:
    """Score the variant and the fp32 graph on the same noise; refuse a classifier-score drop over QUALITY_DROP."""
    import onnx

    item, options, log = job.item, job.options, job.log
    with tempfile.TemporaryDirectory() as scratch:
        baseline = Path(scratch) / "fp32.onnx"
        onnx.save(fp32, baseline)
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
