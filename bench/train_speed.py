"""ms per training iteration, for each architecture: the lecture's loop (predict + 3 x train_on_batch) against
ganport's compiled step with and without XLA (and in bfloat16 mixed precision where the CPU has AVX512_BF16 or AMX),
and what share of this machine's convolution/GEMM rate each reaches (bfloat16 rows: of the float32 rates).

Everything runs in this one process on the same machine and the same real MNIST images. Each contender is warmed
up (tracing and compilation excluded), then timed in several runs; the table gives the median and the speed-up over
the lecture's loop on the same architecture, measured in this run. FLOPs per iteration count the convolutions and
matrix products (forward, weight gradients and the input gradients the backward pass needs), from the layers'
shapes; the machine's rates are measured here on a large GEMM and on the DCGAN's heaviest convolution. GFLOP/s
and "of conv" count each layer's FLOPs as a direct convolution does them (the work the step stands for); ganport's
step computes an upsampling + 3x3 convolution pair with about half of those products (4/9, plus a border;
ganport.train_kernels), so the "executed" columns give the FLOPs it does compute and their share of the rate.

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
from ganport.host import describe_cpu, native_bfloat16
from ganport.lecture import SeedStyleGan
from ganport.models import ARCHITECTURES
from ganport.run import TrainConfig
from ganport.train import MAX_CHUNK, GanTrainer, run_ops_in_order
from ganport.train_kernels import PACKED_DROPOUT, UPSAMPLED_CONVOLUTION, plan

GEMM = "GEMM 2048^3 (numpy)"
CONVOLUTION = "Conv2D 32x28x28x128 -> 64, 3x3"
# Iterations per timed run: enough for a stable median.
TIMED_ITERATIONS = {"gan": 100, "cgan": 100, "dcgan": 10, "dcgan-paper": 50}
BATCH = 32


def time_runs(steps: dict[str, tuple[Callable[[], object], int]], runs: int) -> dict[str, list[float]]:
    """Seconds of each run of each step's `calls` calls, after as many untimed calls (tracing, compilation). The
    runs take turns (a run of each step, then the next round), so a slow spell of this shared VM hits each alike."""
    for step, calls in steps.values():
        for _ in range(calls):
            step()
    timings: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(runs):
        for name, (step, calls) in steps.items():
            started = time.perf_counter()
            for _ in range(calls):
                step()
            timings[name].append(time.perf_counter() - started)
    return timings


def kernel_settings() -> list[str]:
    """The environment that caps or switches the kernels (to time another CPU's ISA on this one)."""
    return [
        f"{name}={os.environ[name]}"
        for name in ("ONEDNN_MAX_CPU_ISA", "XLA_FLAGS", "TF_ENABLE_ONEDNN_OPTS")
        if name in os.environ
    ]


def layer_flops(layer: Any) -> float:
    """Per sample: FLOPs of a Dense or Conv2D layer computed directly (0 for other layers)."""
    if isinstance(layer, keras.layers.Dense):
        return 2.0 * layer.kernel.shape[0] * layer.kernel.shape[1]
    if isinstance(layer, keras.layers.Conv2D):  # Conv2DTranspose too: same MACs per output/input pixel pair
        height, width = layer.output.shape[1:3]
        kernel_h, kernel_w, channels_in, channels_out = layer.kernel.shape
        return 2.0 * height * width * kernel_h * kernel_w * channels_in * channels_out
    return 0.0


def executed_flops(rewrite: str | None, layers: tuple[Any, ...]) -> float:
    """Per sample: FLOPs of one step of ganport.train_kernels.plan, as the training step computes it."""
    layer = layers[-1]
    if rewrite is None or rewrite == PACKED_DROPOUT:
        return layer_flops(layer)
    kernel_h, kernel_w, channels_in, channels_out = layer.kernel.shape
    height, width = layer.output.shape[1:3]
    if rewrite == UPSAMPLED_CONVOLUTION:  # a 2x2 convolution of the (h + 1) x (w + 1) padded small image, 4 phases
        return 2.0 * (height // 2 + 1) * (width // 2 + 1) * 2 * 2 * channels_in * 4 * channels_out
    taps = kernel_h * kernel_w * channels_out  # NARROW_CONVOLUTION: 1x1 products, then the tap selection
    products = 2.0 * layer.input.shape[1] * layer.input.shape[2] * channels_in * taps
    return products + 2.0 * height * width * kernel_h * kernel_w * taps * channels_out


def forward_flops(model: Any, executed: bool = False) -> tuple[float, float]:
    """Per sample: FLOPs of the model's Dense and Conv2D layers, and of its first such layer (whose input gradient a
    network's own update never needs). Counted by hand: TensorFlow's profiler counts forward Conv2D ops only.
    `executed`: as ganport's training step computes them (ganport.train_kernels), else as the layers define them."""
    if executed and isinstance(model, keras.Sequential):
        counts = [executed_flops(rewrite, layers) for rewrite, layers in plan(model)]
    else:
        counts = [layer_flops(layer) for layer in _layers(model)]
    counts = [count for count in counts if count]
    return sum(counts), counts[0]


def _layers(model: Any) -> list[Any]:
    flat = []
    for layer in model.layers:
        flat.extend(_layers(layer) if isinstance(layer, keras.Model) else [layer])
    return flat


def iteration_flops(trainer: GanTrainer, executed: bool = False) -> float:
    """FLOPs of one lecture iteration: D's two half-batch updates, the half batch of fakes, and G's full-batch
    update through D (D forward and input gradients only; G forward, weight and input gradients)."""
    half = BATCH // 2
    generator, generator_first = forward_flops(trainer.generator, executed)
    discriminator, discriminator_first = forward_flops(trainer.discriminator, executed)
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
    # Each alone (numpy's BLAS threads spin on after a GEMM and slow a convolution right after it), and the fastest
    # run: what the machine can do (a slow spell of the shared VM would flatter every share below).
    fastest = {name: min(time_runs({name: (step, 10)}, runs)[name]) for name, (step, _) in work.items()}
    return {name: flops / 1e9 / fastest[name] * 10 for name, (_, flops) in work.items()}


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
        # each contender: one call, iterations per call, and FLOPs it computes per iteration (set below)
        contenders: dict[str, tuple[Callable[[], object], int, str]] = {
            "lecture loop (predict + 3 x train_on_batch)": (lecture.iteration, 1, "layers")
        }
        default_xla = TrainConfig(model=model).jit_compile
        for xla in (True, False):
            trainer = GanTrainer(TrainConfig(model=model, seed=0, jit_compile=xla), dataset.x_train, dataset.y_train)
            chunk = min(MAX_CHUNK, iterations)
            name = f"ganport step, {'XLA' if xla else 'no XLA'}, {chunk} it/call" + (
                " (default)" if xla == default_xla else ""
            )
            contenders[name] = (lambda t=trainer, c=chunk: t.train_steps(c), chunk, "executed")
        flops = {"layers": iteration_flops(trainer), "executed": iteration_flops(trainer, executed=True)}
        if native_bfloat16():  # opt-in bfloat16, where oneDNN computes it natively
            config = TrainConfig(model=model, seed=0, precision="bf16")
            mixed = GanTrainer(config, dataset.x_train, dataset.y_train)
            chunk = min(MAX_CHUNK, iterations)
            name = f"ganport step, bf16 mixed precision, {'XLA' if config.jit_compile else 'no XLA'}, {chunk} it/call"
            contenders[name] = (lambda t=mixed, c=chunk: t.train_steps(c), chunk, "executed")
        calls = {name: (step, iterations // chunk) for name, (step, chunk, _) in contenders.items()}
        timings = time_runs(calls, args.runs)
        baseline = None
        for name, (_, _, computed) in contenders.items():
            per_iteration = [seconds / iterations for seconds in timings[name]]
            median = statistics.median(per_iteration)
            baseline = baseline or median
            rows.append(
                {
                    "model": model,
                    "loop": name,
                    "median_ms": median * 1000,
                    "runs_ms": [seconds * 1000 for seconds in per_iteration],
                    "speedup": baseline / median,
                    "gflop_per_iteration": flops["layers"] / 1e9,
                    "gflop_per_s": flops["layers"] / 1e9 / median,
                    "share_of_gemm": flops["layers"] / 1e9 / median / gemm_rate,
                    "share_of_convolution": flops["layers"] / 1e9 / median / convolution_rate,
                    "executed_gflop_per_iteration": flops[computed] / 1e9,
                    "executed_share_of_convolution": flops[computed] / 1e9 / median / convolution_rate,
                }
            )
    machine = ", ".join([describe_cpu(), *kernel_settings(), f"{os.cpu_count()} cores"])
    table = Table(
        title=f"Training speed, batch {BATCH}, median of {args.runs} runs, TensorFlow {tf.__version__}, "
        f"{machine}; measured: " + ", ".join(f"{name} {rate:.0f} GFLOP/s" for name, rate in rates.items())
    )
    columns = (
        *("model", "loop", "median ms/it", "min", "max", "vs lecture", "GFLOP/it", "GFLOP/s", "of GEMM", "of conv"),
        *("executed GFLOP/it", "executed: of conv"),
    )
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
            f"{row['executed_gflop_per_iteration']:.2f}",
            f"{100 * row['executed_share_of_convolution']:.0f}%",
        )
    report(table, {"machine_gflop_per_s": rates, "kernel_settings": kernel_settings(), "rows": rows}, args.json)


if __name__ == "__main__":
    main()
