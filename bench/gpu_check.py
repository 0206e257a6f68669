"""GPU check for the ONNX generator: CUDA provider really used, parity with the CPU, throughput. Under 5 minutes.

    python bench/gpu_check.py models/mnist-gan/generator.onnx [--fp16 models/mnist-gan/generator_fp16.onnx]

It needs onnxruntime-gpu (CUDA 13 build) on a machine with an NVIDIA GPU and no network. Getting it there is the
hard part: the wheel is about 255 MB, four times what one device call may carry (64 MiB), and the GPU image ships
the CPU-only onnxruntime. The plan: `pip download onnxruntime-gpu==1.31.1 --no-deps` here, `split -b 60M` it into
an ignored folder, carry one part per call to the same warm machine (`cat` them back together there, check the
SHA-256 against the download's), then `pip install --no-deps --target /tmp/site` it and run this script with
PYTHONPATH=/tmp/site. The CUDA 13 and cuDNN libraries it loads are already in that image (nvidia-* packages).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from ganport.onnx_io import CUDA
from ganport.runtime import Generator

BATCHES = (1, 64, 1024, 8192)
# GPU kernels reorder and may use TF32: a looser bound than fp32 CPU parity, still far below visible change.
GPU_ATOL = {"fp32": 1e-3, "fp16": 1e-2}


def throughput(generator: Generator, batch: int, seconds: float = 2.0) -> tuple[float, float]:
    noise = np.random.default_rng(batch).standard_normal((batch, generator.latent_dim), dtype=np.float32)
    out = np.empty((batch, *generator.image_shape), np.float32)
    for _ in range(5):
        generator.generate(noise, out)
    times = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        begin = time.perf_counter()
        generator.generate(noise, out)
        times.append(time.perf_counter() - begin)
    median = statistics.median(times)
    return batch / median, 1000 * float(np.percentile(times, 99))


def check(path: Path, precision: str) -> bool:
    gpu = Generator(path, device="cuda")  # raises when CUDA is not really used: no silent CPU fallback
    cpu = Generator(path, device="cpu")
    noise = np.random.default_rng(0).standard_normal((256, gpu.latent_dim), dtype=np.float32)
    difference = float(np.abs(gpu.generate(noise) - cpu.generate(noise)).max())
    passed = gpu.provider == CUDA and difference <= GPU_ATOL[precision]
    print(
        f"{path.name} [{precision}]: provider {gpu.provider}, max abs diff vs CPU {difference:.3g} "
        f"(atol {GPU_ATOL[precision]:g}) {'ok' if passed else 'FAILED'}"
    )
    for batch in BATCHES:
        rate, p99 = throughput(gpu, batch)
        print(f"  batch {batch:>5}: {rate:>12,.0f} samples/s, p99 {p99:.3f} ms")
    return passed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--fp16", type=Path, default=None)
    args = parser.parse_args()
    results = [check(args.model, "fp32")]
    if args.fp16 is not None:
        results.append(check(args.fp16, "fp16"))
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
