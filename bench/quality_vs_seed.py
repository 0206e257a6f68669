"""Sample quality at equal iterations: the lecture's loop against ganport's compiled step (and its options).

Each contender trains from scratch for `--iterations` on real MNIST with each seed, then 10000 samples are scored
with ganport's MNIST classifier (classifier score, Fréchet distance, classes covered). The table gives mean and
standard deviation over seeds, and the median ms/iteration.

    python bench/quality_vs_seed.py [--iterations 3000] [--seeds 0 1 2] [--json bench/quality_vs_seed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
from common import report
from rich.table import Table

from ganport.data import load_dataset
from ganport.evaluate import Classifier, classifier_path, real_baseline, summarize
from ganport.keras_files.run import predict
from ganport.lecture import SeedStyleGan
from ganport.run import TrainConfig
from ganport.runtime import noise_batches
from ganport.train import MAX_CHUNK, GanTrainer

SAMPLES = 10000


def train_lecture_loop(images: np.ndarray, seed: int, iterations: int) -> tuple[object, float]:
    gan = SeedStyleGan(images, seed=seed)
    started = time.perf_counter()
    for _ in range(iterations):
        gan.iteration()
    return gan.generator, (time.perf_counter() - started) * 1000 / iterations


def ganport_trainer(**options: float) -> Callable[[np.ndarray, int, int], tuple[object, float]]:
    def run(images: np.ndarray, seed: int, iterations: int) -> tuple[object, float]:
        trainer = GanTrainer(TrainConfig(seed=seed, iterations=iterations, **options), images)
        # The first call compiles (once per chunk length); it counts towards the iterations, not the timing.
        done = len(trainer.train_steps(min(MAX_CHUNK, iterations)))
        started = time.perf_counter()
        while done < iterations:
            done += len(trainer.train_steps(min(MAX_CHUNK, iterations - done)))
        return trainer.shipped_generator, (time.perf_counter() - started) * 1000 / max(iterations - MAX_CHUNK, 1)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=3000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()

    images = load_dataset("mnist").x_train
    classifier = Classifier(classifier_path())
    reference, real = real_baseline(classifier)
    contenders = {
        "lecture loop (predict + train_on_batch)": train_lecture_loop,
        "ganport (lecture defaults)": ganport_trainer(),
        "ganport --ema 0.999": ganport_trainer(ema_decay=0.999),
        "ganport --label-smoothing 0.1": ganport_trainer(label_smoothing=0.1),
    }
    rows = []
    for name, train in contenders.items():
        for seed in args.seeds:
            generator, ms_per_iteration = train(images, seed, args.iterations)
            samples = np.concatenate([predict(generator, noise) for noise in noise_batches(SAMPLES, 100, 0, 2000)])
            metrics = summarize(name, *classifier(samples), reference)
            rows.append(
                {
                    "contender": name,
                    "seed": seed,
                    "ms_per_iteration": ms_per_iteration,
                    "classifier_score": metrics.classifier_score,
                    "frechet_distance": metrics.frechet_distance,
                    "classes_covered": metrics.classes_covered,
                    "kl_from_uniform": metrics.kl_from_uniform,
                }
            )
            print(json.dumps(rows[-1]), flush=True)

    table = Table(
        title=f"Quality after {args.iterations} iterations, seeds {args.seeds}, {SAMPLES} samples each "
        f"(real MNIST: score {real.classifier_score:.2f}, FD {real.frechet_distance:.2f})"
    )
    for column in ("contender", "classifier score", "Fréchet distance", "classes", "ms/it"):
        table.add_column(column, justify="left" if column == "contender" else "right")
    for name in contenders:
        mine = [row for row in rows if row["contender"] == name]

        def spread(key: str, mine: list[dict] = mine) -> str:
            values = [row[key] for row in mine]
            return f"{statistics.mean(values):.2f} ± {statistics.stdev(values) if len(values) > 1 else 0:.2f}"

        classes = "/".join(str(row["classes_covered"]) for row in mine)
        ms = statistics.median(row["ms_per_iteration"] for row in mine)
        table.add_row(name, spread("classifier_score"), spread("frechet_distance"), classes, f"{ms:.1f}")
    report(table, rows, args.json)


if __name__ == "__main__":
    main()
