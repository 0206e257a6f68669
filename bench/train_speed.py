"""ms per training iteration: the lecture's loop (predict + 3 x train_on_batch) against ganport's compiled step.

Both run in this one process on the same machine and the same real MNIST images. Each is warmed up (tracing and
compilation excluded), then timed in several runs of `--iterations`; the table gives each run's median and the
speed-up measured in this run.

    python bench/train_speed.py [--runs 5] [--iterations 100] [--json bench/train_speed.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
from common import report
from rich.table import Table

from ganport.data import load_dataset
from ganport.lecture import SeedStyleGan
from ganport.run import TrainConfig
from ganport.train import MAX_CHUNK, GanTrainer


def time_runs(step: Callable[[], object], iterations: int, runs: int, warmup: int) -> list[float]:
    """ms/iteration of each run, after `warmup` untimed iterations."""
    for _ in range(warmup):
        step()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(iterations):
            step()
        timings.append((time.perf_counter() - started) * 1000 / iterations)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    images = load_dataset("mnist").x_train
    seed_style = SeedStyleGan(images, seed=0)
    # Each contender runs `chunk` iterations per call; ganport's loop runs up to MAX_CHUNK per compiled call.
    contenders: dict[str, tuple[Callable[[], object], int]] = {
        "lecture loop (predict + 3 x train_on_batch)": (seed_style.iteration, 1)
    }
    for xla in (True, False):
        trainer = GanTrainer(TrainConfig(seed=0, jit_compile=xla), images)
        for chunk in (MAX_CHUNK, 1):
            name = f"ganport step, {'XLA' if xla else 'no XLA'}, {chunk} it/call"
            contenders[name] = (lambda t=trainer, c=chunk: t.train_steps(c), chunk)

    results = {
        name: [ms / chunk for ms in time_runs(step, args.iterations // chunk, args.runs, max(1, args.warmup // chunk))]
        for name, (step, chunk) in contenders.items()
    }
    baseline = statistics.median(results[next(iter(results))])
    table = Table(
        title=f"Training speed, batch 32, {args.runs} runs x {args.iterations} iterations, "
        f"TensorFlow {tf.__version__}, {os.cpu_count()} CPU cores"
    )
    for column in ("loop", "median ms/it", "min", "max", "speed-up vs lecture"):
        table.add_column(column, justify="left" if column == "loop" else "right")
    rows = []
    for name, timings in results.items():
        median = statistics.median(timings)
        rows.append({"loop": name, "median_ms": median, "runs_ms": timings, "speedup": baseline / median})
        table.add_row(name, f"{median:.1f}", f"{min(timings):.1f}", f"{max(timings):.1f}", f"{baseline / median:.1f}x")
    report(table, rows, args.json)


if __name__ == "__main__":
    main()
