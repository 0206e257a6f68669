"""Sample quality along one training run: classifier score, Fréchet distance, KL from uniform and classes covered at
chosen iterations, scored as `ganport eval` scores the run's generator there.

The run trains to the first point, then resumes to each next one (`ganport train`, then `--resume --iterations`):
resumed runs are bit-exact, so every point is that of one uninterrupted run of the same command. The run folder
stays, so a later call with larger --points continues it.

    python bench/quality_curve.py --out runs/curve --points 30000 50000 80000 [--model gan] [--batch-size 128]
        [--ema 0.9999] [--seed 0] [--samples 10000] [--json bench/results/quality_curve.json]
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from common import report
from rich.table import Table

from ganport.errors import GanportError
from ganport.evaluate import DEFAULT_SAMPLES, evaluate
from ganport.run import RunFolder, TrainConfig
from ganport.train import resume, train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="run folder: new, or a run of the same settings to continue")
    parser.add_argument("--points", type=int, nargs="+", required=True, help="iterations to score at")
    parser.add_argument("--model", default="gan")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ema", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--samples", type=int, default=DEFAULT_SAMPLES)
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    settings = {"model": args.model, "batch_size": args.batch_size, "ema_decay": args.ema, "seed": args.seed}
    run = RunFolder(args.out)
    rows = []
    for point in sorted(set(args.points)):
        reached = run.read_state().get("iteration", 0) if run.config.is_file() else None
        if reached is not None and reached > point:
            raise SystemExit(f"{args.out} is already at iteration {reached}, past {point}; drop that point.")
        try:
            if reached is None:
                train(TrainConfig(iterations=point, **settings), args.out)
            elif reached < point:
                resume(args.out, point, settings=settings)
        except GanportError as error:
            raise SystemExit(str(error)) from error
        report_at, _ = evaluate(run.path / "generator.keras", n=args.samples, seed=0, log=lambda line: None)
        metrics = report_at.generated
        rows.append(
            {
                "iterations": point,
                "classifier_score": metrics.classifier_score,
                "frechet_distance": metrics.frechet_distance,
                "kl_from_uniform": metrics.kl_from_uniform,
                "classes_covered": metrics.classes_covered,
            }
        )
        print(rows[-1], flush=True)

    described = ", ".join(f"{name} {value}" for name, value in settings.items())
    table = Table(title=f"Quality along one run ({described}), {args.samples} samples, noise seed 0")
    for column in ("iterations", "classifier score", "Fréchet distance", "KL from uniform", "classes"):
        table.add_column(column, justify="right")
    for row in rows:
        table.add_row(
            str(row["iterations"]),
            f"{row['classifier_score']:.3f}",
            f"{row['frechet_distance']:.2f}",
            f"{row['kl_from_uniform']:.4f}",
            f"{row['classes_covered']}/10",
        )
    report(table, {"settings": settings, "samples": args.samples, "points": rows}, args.json)


if __name__ == "__main__":
    main()
