"""ms per training iteration, for each architecture: the lecture's loop (predict + 3 x train_on_batch) against
ganport's compiled step with and without XLA (and in bfloat16 mixed precision where the CPU has AVX512_BF16 or AMX),
and what share of this machine's convolution/GEMM rate each reaches (bfloat16 rows: of the float32 rates).

Everything runs in this one process on the same machine and the same real MNIST images. Each contender is warmed
up (tracing and compilation excluded), then timed in several runs; the table gives the median and the speed-up over
the lecture's loop on the same architecture, measured in this run. FLOPs per iteration count the convolutions and
matrix products (forward, weight gradients and the input gradients the backward pass needs), from the layers'
shapes; the machine's rates are measured here on a large GEMM and on the DCGAN's heaviest convolution.

    python bench/train_speed.py [--runs 5] [--models gan,dcgan,cgan] [--json bench/results/train_speed.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras
import numpy as np
import tensorflow as tf
from common import report
from rich.console import Console
from rich.table import Table

from ganport.data import load_dataset
from ganport.lecture import SeedStyleGan
from ganport.models import ARCHITECTURES
from ganport.parity import describe_cpu, native_bfloat16
from ganport.run import TrainConfig
from ganport.train import MAX_CHUNK, GanTrainer, run_ops_in_order

GEMM = "GEMM 2048^3 (numpy)"
CONVOLUTION = "Conv2D 32x28x28x128 -> 64, 3x3"
# Iterations per timed run: enough for a stable median, few enough for DCGAN's first XLA compilation (seconds).
TIMED_ITERATIONS = {"gan": 100, "cgan": 100, "dcgan": 5}
BATCH = 32


def time_runs(step: Callable[[], object], calls: int, runs: int, warmup: int = 1) -> list[float]:
    """Seconds of each run of `calls` calls, after `warmup` untimed calls (tracing, compilation)."""
    for _ in range(warmup):
        step()
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        for _ in range(calls):
            step()
        timings.append(time.perf_counter() - started)
    return timings


def forward_flops(model: Any) -> tuple[float, float]:
    """Per sample: FLOPs of the model's Dense and Conv2D layers, and of its first such layer (whose input gradient a
    network's own update never needs). Counted by hand: TensorFlow's profiler counts forward Conv2D ops only."""
    counts = []
    for layer in _layers(model):
        if isinstance(layer, keras.layers.Dense):
            counts.append(2.0 * layer.kernel.shape[0] * layer.kernel.shape[1])
        elif isinstance(layer, keras.layers.Conv2D):  # Conv2DTranspose too: same MACs per output/input pixel pair
            height, width = layer.output.shape[1:3]
            kernel_h, kernel_w, channels_in, channels_out = layer.kernel.shape
            counts.append(2.0 * height * width * kernel_h * kernel_w * channels_in * channels_out)
    return sum(counts), counts[0]


def _layers(model: Any) -> list[Any]:
    flat = []
    for layer in model.layers:
        flat.extend(_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return flat


def iteration_flops(trainer: GanTrainer) -> float:
    """FLOPs of one lecture iteration: D's two half-batch updates, the half batch of fakes, and G's full-batch
    update through D (D forward and input gradients only; G forward, weight and input gradients)."""
    half = BATCH // 2
    generator, generator_first = forward_flops(trainer.generator)
    discriminator, discriminator_first = forward_flops(trainer.discriminator)
    discriminator_update = 3 * discriminator - discriminator_first
    generator_update = 3 * generator - generator_first + 2 * discriminator
    return 2 * half * discriminator_update + half * generator + BATCH * generator_update


def machine_rates(runs: int) -> dict[str, float]:
    """GFLOP/s of a 2048^3 fp32 GEMM (numpy's BLAS, the fastest here) and of the DCGAN's heaviest convolution
    through TensorFlow (batch 32, 28x28, 128 -> 64, 3x3)."""
    a, b = np.random.default_rng(0).standard_normal((2, 2048, 2048), dtype=np.float32)
    images, kernel = tf.random.normal([BATCH, 28, 28, 128]), tf.random.normal([3, 3, 128, 64])
    work = {
        GEMM: (lambda: a @ b, 2.0 * 2048**3),
        CONVOLUTION: (
            lambda: tf.nn.conv2d(images, kernel, 1, "SAME").numpy(),
            2.0 * BATCH * 28 * 28 * 3 * 3 * 128 * 64,
        ),
    }
    return {
        name: flops / 1e9 / statistics.median(time_runs(step, 10, runs)) * 10 for name, (step, flops) in work.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--models", default=",".join(ARCHITECTURES), help="comma-separated architectures")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()

    run_ops_in_order(Console(stderr=True))  # as `ganport train` runs: one op at a time, bitwise reproducible
    dataset = load_dataset("mnist")
    rates = machine_rates(args.runs)
    gemm_rate, convolution_rate = rates[GEMM], rates[CONVOLUTION]
    rows = []
    for model in args.models.split(","):
        iterations = TIMED_ITERATIONS[model]
        lecture = SeedStyleGan(dataset.x_train, dataset.y_train, model=model, seed=0)
        contenders: dict[str, tuple[Callable[[], object], int]] = {
            "lecture loop (predict + 3 x train_on_batch)": (lecture.iteration, 1)
        }
        default_xla = ARCHITECTURES[model].xla
        for xla in (True, False):
            trainer = GanTrainer(TrainConfig(model=model, seed=0, jit_compile=xla), dataset.x_train, dataset.y_train)
            chunk = min(MAX_CHUNK, iterations)
            name = f"ganport step, {'XLA' if xla else 'no XLA'}, {chunk} it/call" + (
                " (default)" if xla == default_xla else ""
            )
            contenders[name] = (lambda t=trainer, c=chunk: t.train_steps(c), chunk)
        flops = iteration_flops(trainer)
        if native_bfloat16():  # opt-in bfloat16, where oneDNN computes it natively
            config = TrainConfig(model=model, seed=0, precision="bf16")
            mixed = GanTrainer(config, dataset.x_train, dataset.y_train)
            chunk = min(MAX_CHUNK, iterations)
            name = f"ganport step, bf16 mixed precision, {'XLA' if config.jit_compile else 'no XLA'}, {chunk} it/call"
            contenders[name] = (lambda t=mixed, c=chunk: t.train_steps(c), chunk)
        baseline = None
        for name, (step, chunk) in contenders.items():
            warmup = max(1, min(MAX_CHUNK, iterations) // chunk)
            timings = time_runs(step, iterations // chunk, args.runs, warmup)
            per_iteration = [seconds / iterations for seconds in timings]
            median = statistics.median(per_iteration)
            baseline = baseline or median
            rows.append(
                {
                    "model": model,
                    "loop": name,
                    "median_ms": median * 1000,
                    "runs_ms": [seconds * 1000 for seconds in per_iteration],
                    "speedup": baseline / median,
                    "gflop_per_iteration": flops / 1e9,
                    "gflop_per_s": flops / 1e9 / median,
                    "share_of_gemm": flops / 1e9 / median / gemm_rate,
                    "share_of_convolution": flops / 1e9 / median / convolution_rate,
                }
            )
    table = Table(
        title=f"Training speed, batch {BATCH}, median of {args.runs} runs, TensorFlow {tf.__version__}, "
        f"{describe_cpu()}, {os.cpu_count()} cores; measured: "
        + ", ".join(f"{name} {rate:.0f} GFLOP/s" for name, rate in rates.items())
    )
    columns = ("model", "loop", "median ms/it", "min", "max", "vs lecture", "GFLOP/it", "GFLOP/s", "of GEMM", "of conv")
    for column in columns:
        table.add_column(column, justify="left" if column in ("model", "loop") else "right")
    for row in rows:
        table.add_row(
            row["model"],
            row["loop"],
            f"{row['median_ms']:.1f}",
            f"{min(row['runs_ms']):.1f}",
            f"{max(row['runs_ms']):.1f}",
            f"{row['speedup']:.1f}x",
            f"{row['gflop_per_iteration']:.2f}",
            f"{row['gflop_per_s']:.1f}",
            f"{100 * row['share_of_gemm']:.0f}%",
            f"{100 * row['share_of_convolution']:.0f}%",
        )
    report(table, {"machine_gflop_per_s": rates, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
