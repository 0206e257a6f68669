"""Generator inference speed, in one run: Keras, a compiled tf.function and onnxruntime graph variants.

For batch 1, 64, 1024 and 8192 (--batches; 1024 among them): samples/s (batch / median latency) and p50/p99
latency of each backend, the machine's measured fp32 GEMM rate (numpy, 2048^3) and each fp32 row's share of it, and,
for the reduced-precision graphs, the classifier-score change against fp32 (10000 samples). A table on stdout and
JSON on disk.

    python bench/inference.py [--model models/mnist-gan/generator.h5] [--json bench/inference.json]
    python bench/inference.py --model models/mnist-dcgan/generator.h5 --batches 1,64,1024   # int8 static
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np
import tensorflow as tf
from common import report
from rich.table import Table

from ganport.evaluate import score_generator
from ganport.export import ExportOptions, export
from ganport.keras_files.load import load_model_file
from ganport.runtime import Generator

BATCHES = (1, 64, 1024, 8192)
DEFAULT_MODEL = Path("models/mnist-gan/generator.h5")


def latencies(run: Callable[[], object], budget_s: float, min_runs: int = 10, max_runs: int = 5000) -> list[float]:
    """Seconds per call after 3 warm-up calls, repeated for `budget_s` (within min_runs..max_runs calls)."""
    for _ in range(3):
        run()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < max_runs and (len(times) < min_runs or time.perf_counter() - started < budget_s):
        begin = time.perf_counter()
        run()
        times.append(time.perf_counter() - begin)
    return times


def gemm_rate() -> float:
    """fp32 FLOP/s of numpy's matrix product on this machine (median of 5)."""
    size = 2048
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size), np.float32), rng.standard_normal((size, size), np.float32)
    seconds = statistics.median(latencies(lambda: a @ b, budget_s=0, min_runs=5))
    return 2 * size**3 / seconds


def flops_per_sample(model) -> float:
    """Multiply-adds of the Dense and convolution layers, times two: a kernel's size, times the positions it is
    applied at (a Conv2D's output pixels, a Conv2DTranspose's input pixels)."""
    total = 0.0
    for layer in model.layers:
        weights = layer.get_weights()
        if not weights or len(weights[0].shape) not in (2, 4):
            continue
        positions = 1
        if len(weights[0].shape) == 4:
            spatial = layer.input.shape if "Transpose" in type(layer).__name__ else layer.output.shape
            positions = int(np.prod(spatial[1:3]))
        total += 2 * np.prod(weights[0].shape) * positions
    return float(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=DEFAULT_MODEL, help="a Keras generator (.h5 or .keras)")
    parser.add_argument("--budget", type=float, default=1.5, help="seconds of timing per row and batch")
    parser.add_argument("--json", type=Path, default=Path("bench/inference.json"), help="where the JSON goes")
    parser.add_argument(
        "--batches", default=",".join(map(str, BATCHES)), help="batch sizes, comma-separated (a DCGAN: 1,64,1024)"
    )
    args = parser.parse_args()
    batches = [int(batch) for batch in args.batches.split(",")]

    keras_model = load_model_file(args.model)
    latent = int(keras_model.inputs[0].shape[-1])
    flops = flops_per_sample(keras_model)
    compiled = tf.function(lambda z: keras_model(z, training=False), jit_compile=True)

    with tempfile.TemporaryDirectory() as scratch:
        graphs = {}
        score = functools.partial(score_generator, log=lambda line: None)
        variants = {
            "plain tf2onnx": ExportOptions(fold_batch_norm=False),
            "folded fp32": ExportOptions(),
            "folded fp16": ExportOptions(precision="fp16", score=score),
            "folded int8": ExportOptions(precision="int8", score=score),
        }
        quality = {}
        for name, options in variants.items():
            (item,) = export(
                args.model, "onnx", Path(scratch) / name.replace(" ", "-"), log=lambda line: None, options=options
            )
            graphs[name] = Generator(item.path, device="cpu")
            quality[name] = item.quality or {}
        fp32_score = score_generator(
            Path(scratch) / "folded-fp32" / f"{args.model.stem}.onnx", log=lambda line: None
        ).classifier_score

        contenders: dict[str, Callable[[np.ndarray], object]] = {
            "keras.predict": lambda z: keras_model.predict(z, batch_size=len(z), verbose=0),
            "tf.function (XLA)": lambda z: compiled(z).numpy(),
        }
        for name, generator in graphs.items():
            contenders[f"onnxruntime {name}"] = lambda z, g=generator, out={}: g.generate(
                z, out.setdefault(len(z), np.empty((len(z), *g.image_shape), np.float32))
            )
        rate = gemm_rate()
        rows = []
        for name, run in contenders.items():
            for batch in batches:
                noise = np.random.default_rng(batch).standard_normal((batch, latent), dtype=np.float32)
                times = latencies(lambda run=run, noise=noise: run(noise), args.budget)
                median = statistics.median(times)
                row = {
                    "backend": name,
                    "batch": batch,
                    "samples_per_s": batch / median,
                    "p50_ms": 1000 * median,
                    "p99_ms": 1000 * float(np.percentile(times, 99)),
                    "runs": len(times),
                }
                if "fp16" not in name and "int8" not in name:
                    row["gemm_share"] = row["samples_per_s"] * flops / rate
                rows.append(row)
                print(json.dumps(row), flush=True)

    by_key = {(row["backend"], row["batch"]): row for row in rows}
    table = Table(
        title=f"Generator inference, {os.cpu_count()} CPU cores; fp32 GEMM {rate / 1e9:.0f} GFLOP/s; "
        f"{flops / 1e6:.2f} MFLOP/sample"
    )
    table.add_column("backend")
    for batch in batches:
        table.add_column(f"b={batch} samples/s", justify="right")
        table.add_column("p50/p99 ms", justify="right")
    table.add_column("GEMM share b=1024", justify="right")
    table.add_column("score Δ vs fp32", justify="right")
    for name in contenders:
        cells = []
        for batch in batches:
            row = by_key[(name, batch)]
            cells += [f"{row['samples_per_s']:,.0f}", f"{row['p50_ms']:.2f}/{row['p99_ms']:.2f}"]
        share = by_key[(name, 1024)].get("gemm_share")
        variant = name.removeprefix("onnxruntime ")
        delta = quality.get(variant, {}).get("classifier_score")
        table.add_row(
            name,
            *cells,
            "" if share is None else f"{100 * share:.0f}%",
            "" if delta is None else f"{delta - fp32_score:+.3f}",
        )
    folded, plain, int8 = (
        by_key[(f"onnxruntime {v}", 1024)]["samples_per_s"] for v in ("folded fp32", "plain tf2onnx", "folded int8")
    )
    summary = (
        f"batch 1024: folded/plain {folded / plain:.2f}x, int8/folded {int8 / folded:.2f}x, "
        f"folded fp32 at {100 * by_key[('onnxruntime folded fp32', 1024)]['gemm_share']:.0f}% of GEMM rate"
    )
    report(
        table,
        {
            "gemm_flops": rate,
            "flops_per_sample": flops,
            "fp32_classifier_score": fp32_score,
            "quality": quality,
            "rows": rows,
        },
        args.json,
    )
    print(summary)


if __name__ == "__main__":
    main()
