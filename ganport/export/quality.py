"""The quality gate of reduced-precision exports: a variant may not cost more than QUALITY_DROP classifier score.

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
    if drop > QUALITY_DROP and not options.force:
        raise QualityGateError(
            f"{options.precision} export of {item.stem} drops the classifier score by {drop:.3f} "
            f"(> {QUALITY_DROP}); keep fp32, or pass --force to write it anyway."
        )
    return quality
