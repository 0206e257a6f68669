"""Where a training iteration's time goes, op by op: TensorFlow's profiler on ganport's compiled step.

Runs `--iterations` iterations of one architecture under tf.profiler, reads the trace (XSpace protobuf) and sums each
op's time per iteration: XLA's own ops (dots, fusions) with `--xla`, TensorFlow's kernels (oneDNN convolutions,
element-wise ops) without. Ops are grouped into matrix products, convolutions, element-wise work and random
numbers. Wrapper events (a whole XLA executable, an intra-op ParallelFor) are left out, so the groups add up to the
ops' own time; an op that runs on both cores is counted on each, so they may add up to more than the wall time.

The profiler slows many small ops, so the step is also timed without it, by elimination: the real step, and the
same step whose optimizers only sum the gradients (every gradient still computed, no weight updated): the difference
is Adam's time.

    python bench/train_profile.py [--model gan] [--xla/--no-xla] [--iterations 25] [--runs 7] [--json ...]
"""

from __future__ import annotations

import argparse
import collections
import os
import re
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf
from common import report
from rich.console import Console
from rich.table import Table
from tensorflow.tsl.profiler.protobuf import xplane_pb2
from train_speed import iteration_flops

from ganport.data import load_dataset
from ganport.host import describe_cpu
from ganport.run import TrainConfig
from ganport.train import GanTrainer, run_ops_in_order

# Events that contain other events rather than doing work themselves.
WRAPPERS = {"Execute", "Await", "Process", "ExecuteAsyncOnStream", "BlockUntilReady", "ParallelFor", "_XlaRun"}
GROUPS = (
    ("matrix products", ("MatMul", "dot", "Dot")),
    ("convolutions", ("Conv2D", "convolution")),
    ("random numbers", ("Random", "rng", "Philox", "ThreeFry")),
)


def group_of(op: str) -> str:
    return next((name for name, keys in GROUPS if any(key in op for key in keys)), "element-wise, reductions, other")


def op_times(logdir: Path) -> collections.Counter:
    """Seconds per op kind (the name's stem: `MatMul.464` and `MatMul_1.104` are MatMul) over the whole trace."""
    space = xplane_pb2.XSpace()
    space.ParseFromString(next(logdir.rglob("*.xplane.pb")).read_bytes())
    times: collections.Counter = collections.Counter()
    for plane in space.planes:
        if not plane.name.startswith("/host:CPU"):
            continue
        for line in plane.lines:
            if line.name == "python":
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name.split(":")[-1]
                stem = re.sub(r"(_\d+)?(\.\d+)?$", "", name)
                if stem not in WRAPPERS:
                    times[stem] += event.duration_ps / 1e12
    return times


class GradientSum:
    """An optimizer stand-in that only sums the gradients into a scalar: the step still computes every gradient
    (their sum is kept), but updates no weight, so the difference to the real step is the optimizer's own time."""

    def __init__(self) -> None:
        self.total = tf.Variable(0.0, trainable=False)

    def apply(self, gradients: list[tf.Tensor], variables: list[tf.Variable]) -> None:
        self.total.assign_add(tf.add_n([tf.reduce_sum(gradient) for gradient in gradients]))


def median_ms(trainer: GanTrainer, iterations: int, runs: int) -> float:
    trainer.train_steps(iterations)  # compile: XLA compiles each loop length once
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        trainer.train_steps(iterations)
        timings.append((time.perf_counter() - started) / iterations * 1000)
    return statistics.median(timings)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="gan")
    parser.add_argument("--xla", action=argparse.BooleanOptionalAction, default=None)
    parser.add_argument("--iterations", type=int, default=25)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    run_ops_in_order(None)  # as `ganport train` runs
    dataset = load_dataset("mnist")
    config = TrainConfig(model=args.model, seed=0, jit_compile=args.xla)
    # By elimination, without the profiler: the step, then the same step whose optimizers only sum the gradients.
    step_ms = median_ms(GanTrainer(config, dataset.x_train, dataset.y_train), args.iterations, args.runs)
    without_updates = GanTrainer(config, dataset.x_train, dataset.y_train)
    without_updates.generator_optimizer = without_updates.discriminator_optimizer = GradientSum()
    without_updates.steps = tf.function(without_updates._steps, jit_compile=config.jit_compile)
    gradients_ms = median_ms(without_updates, args.iterations, args.runs)
    trainer = GanTrainer(config, dataset.x_train, dataset.y_train)
    trainer.train_steps(args.iterations)  # compile: XLA compiles each loop length once
    with tempfile.TemporaryDirectory() as logdir:
        tf.profiler.experimental.start(logdir)
        started = time.perf_counter()
        trainer.train_steps(args.iterations)
        wall = (time.perf_counter() - started) / args.iterations
        tf.profiler.experimental.stop()
        times = op_times(Path(logdir))
    flops = iteration_flops(trainer)
    per_iteration = {op: seconds / args.iterations for op, seconds in times.items()}
    groups: collections.Counter = collections.Counter()
    for op, seconds in per_iteration.items():
        groups[group_of(op)] += seconds
    results = {
        "model": args.model,
        "xla": trainer.config.jit_compile,
        "wall_ms": wall * 1000,
        "gflop_per_iteration": flops / 1e9,
        "executed_gflop_per_iteration": iteration_flops(trainer, executed=True) / 1e9,
        "groups_ms": {name: seconds * 1000 for name, seconds in groups.items()},
        "ops_ms": {op: seconds * 1000 for op, seconds in per_iteration.items()},
        "step_ms": step_ms,
        "without_weight_updates_ms": gradients_ms,
        "adam_ms": step_ms - gradients_ms,
        "parameters": trainer.generator.count_params() + trainer.discriminator.count_params(),
    }
    title = (
        f"{args.model} ({'XLA' if trainer.config.jit_compile else 'TensorFlow kernels'}): {wall * 1000:.2f} ms per "
        f"iteration, {flops / 1e9:.2f} GFLOP; {describe_cpu()}, TF {tf.__version__}"
    )
    table = Table(title=title)
    for column in ("group / op", "ms per iteration, all threads", "share of the ops' time"):
        table.add_column(column, justify="left" if column == "group / op" else "right")
    total = sum(groups.values())
    for name, seconds in groups.most_common():
        table.add_row(name, f"{seconds * 1000:.2f}", f"{100 * seconds / total:.0f}%")
    for op, seconds in collections.Counter(per_iteration).most_common(12):
        table.add_row(f"  {op}", f"{seconds * 1000:.2f}", f"{100 * seconds / total:.0f}%")
    Console(width=200).print(table)
    by_elimination = Table(
        title=f"By elimination, without the profiler (median of {args.runs} runs of {args.iterations} iterations)"
    )
    for column in ("what", "ms per iteration", "GFLOP/s"):
        by_elimination.add_column(column, justify="left" if column == "what" else "right")
    by_elimination.add_row("the step", f"{step_ms:.2f}", f"{flops / 1e9 / step_ms * 1000:.0f}")
    by_elimination.add_row(
        "forward and every gradient, no weight update",
        f"{gradients_ms:.2f}",
        f"{flops / 1e9 / gradients_ms * 1000:.0f}",
    )
    by_elimination.add_row(
        f"Adam's updates ({results['parameters']:,} parameters of G and D; D is updated twice)",
        f"{step_ms - gradients_ms:.2f}",
        "",
    )
    report(by_elimination, results, args.json)


if __name__ == "__main__":
    main()
