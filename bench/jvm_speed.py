"""The JVM routes' speed beside Python's, on the same files in one run: samples/s and p50/p99 latency per batch size.

Runs java-check's SpeedBench (DL4J on each reference generator's HDF5 file as `ganport export --format h5` writes it
today, exported for the run and verified with DL4J first, and on the shipped MLP and DCGAN files written before
BatchNorm was folded and convolutions became Deconvolution2D layers; ONNX Runtime for Java on the fp32 and int8 ONNX
files and on the DCGAN critic's, exported for the run), then Python's onnxruntime on the same ONNX files, timed the
same way: 1 s of warm-up, then calls for about --seconds (at least 10), the median call giving samples/s. Both use
one thread per core: OMP_NUM_THREADS for DL4J (ND4J's native CPU backend), onnxruntime's default intra-op pool
elsewhere.

DL4J runs three times: on ND4J's plain build as it starts by itself, the same with OPENBLAS_CORETYPE naming the kernel
family this CPU's flags allow (ND4J's bundled OpenBLAS picks its kernels from the CPU model number, and falls back to
its slowest, Prescott's, on a model it does not know, such as a virtualised Xeon's), and on ND4J's oneDNN build
(java-check carries both; ganport.verify.DL4J_NATIVES) with that core type.

    .venv/bin/python bench/jvm_speed.py [--seconds 3] [--json bench/results/DATE-jvm_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
from common import report
from rich.table import Table

from ganport.export import ExportOptions, export
from ganport.host import cpu_flags, provenance
from ganport.runtime import SHIPPED_MODELS
from ganport.verify import build_java_check, dl4j_natives_option, verify

MODELS = ["mnist-gan", "mnist-cgan", "mnist-dcgan"]
CONV_CRITIC = "mnist-dcgan"  # its discriminator: the shipped convolutional critic
# Shipped generator.h5 files written before today's forms, timed beside them: BatchNorm layers (the lecture's MLP),
# UpSampling2D + Conv2D layers (the DCGAN).
SHIPPED_BEFORE = {"mnist-gan": "BatchNorm layers", "mnist-dcgan": "Conv2D layers"}
BATCHES = [1, 64, 1024]


def openblas_core_type() -> str | None:
    """The OpenBLAS kernel family this CPU's flags allow (None: leave OpenBLAS's own choice)."""
    flags = cpu_flags()
    if {"avx512f", "avx512bw", "avx512vl", "avx512dq"} <= flags:
        return "SkylakeX"
    return "Haswell" if {"avx2", "fma"} <= flags else None


def java_rows(
    files: list[Path],
    seconds: float,
    core_type: str | None = None,
    batches: list[int] = BATCHES,
    natives: str = "plain",
) -> list[dict]:
    """SpeedBench's rows, DL4J's labelled with what it ran on: ND4J's `natives` build and the OpenBLAS core type."""
    classpath = build_java_check()
    cores = str(os.cpu_count())
    env = {**os.environ, "OMP_NUM_THREADS": cores, **({"OPENBLAS_CORETYPE": core_type} if core_type else {})}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "speed.json"
        command = ["java", dl4j_natives_option(natives), "-cp", os.pathsep.join(classpath), "ganport.dl4j.SpeedBench"]
        subprocess.run(
            [*command, str(out), str(seconds), ",".join(map(str, batches)), *map(str, files)],
            env=env,
            check=True,
            capture_output=True,
        )
        rows = json.loads(out.read_text())
    for row in rows:
        if row["runtime"] == "dl4j":
            row["runtime"] += f", ND4J {natives}" + (f", OPENBLAS_CORETYPE={core_type}" if core_type else "")
    return rows


def python_row(file: Path, batch: int, seconds: float) -> dict:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        item.name: rng.integers(0, 10, (batch, 1)).astype(np.int64)
        if item.type == "tensor(int64)"
        else rng.standard_normal((batch, *item.shape[1:])).astype(np.float32)
        for item in session.get_inputs()
    }
    warm_up_end = time.perf_counter() + 1.0
    while time.perf_counter() < warm_up_end:
        session.run(None, feeds)
    latencies: list[float] = []
    end = time.perf_counter() + seconds
    while len(latencies) < 10 or (time.perf_counter() < end and len(latencies) < 100_000):
        start = time.perf_counter()
        session.run(None, feeds)
        latencies.append(time.perf_counter() - start)
    latencies.sort()
    p50 = latencies[len(latencies) // 2]
    return {
        "file": str(file),
        "runtime": "python onnxruntime",
        "batch": batch,
        "calls": len(latencies),
        "samplesPerSecond": batch / p50,
        "p50Ms": p50 * 1e3,
        "p99Ms": latencies[min(len(latencies) - 1, int(np.ceil(len(latencies) * 0.99)) - 1)] * 1e3,
    }


def dl4j_files(scratch: Path) -> list[Path]:
    """Each reference generator's HDF5 file as ganport writes it today (for a convolutional one, every stride-1
    Conv2D as a Deconvolution2D, an UpSampling2D before it taken in, "valid" and cropped), exported here and
    verified with DL4J (on ND4J's oneDNN build)."""
    quiet = lambda line: None  # noqa: E731
    files = [export(SHIPPED_MODELS / name / "generator.h5", "h5", scratch / name, log=quiet)[0].path for name in MODELS]
    failed = [item.line() for name in MODELS for item in verify(scratch / name, jvm=True, log=quiet) if not item.passed]
    if failed:
        raise SystemExit(f"DL4J parity fails: {failed}")
    return files


def critic_files(scratch: Path) -> list[Path]:
    """The convolutional critic's ONNX files, fp32 and int8 (static: it has convolutions), exported here."""
    source = SHIPPED_MODELS / CONV_CRITIC / "discriminator.h5"
    # a critic's int8 is judged against fp32, not scored; forced, so that a slower file is measured too
    options = ExportOptions(precision="int8", force=True, score=lambda path: None)
    quiet = lambda line: None  # noqa: E731
    (fp32,) = export(source, "onnx", scratch / CONV_CRITIC, log=quiet)
    (int8,) = export(source, "onnx", scratch / CONV_CRITIC, log=quiet, options=options)
    return [fp32.path, int8.path]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per file and batch size")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    onnx_files = [SHIPPED_MODELS / name / file for name in MODELS for file in ("generator.onnx", "generator_int8.onnx")]
    with tempfile.TemporaryDirectory() as scratch:
        h5_files = dl4j_files(Path(scratch) / "h5")
        onnx_files += critic_files(Path(scratch))
        rows = java_rows(h5_files + onnx_files, args.seconds)
        core_type = openblas_core_type()
        if core_type:
            rows += java_rows(h5_files, args.seconds, core_type)
        rows += java_rows(h5_files, args.seconds, core_type, natives="onednn")
        for name, form in SHIPPED_BEFORE.items():
            written_before = java_rows([SHIPPED_MODELS / name / "generator.h5"], args.seconds, core_type, BATCHES[:2])
            rows += [{**row, "runtime": row["runtime"] + f", shipped file ({form})"} for row in written_before]
        rows += [python_row(file, batch, args.seconds) for file in onnx_files for batch in BATCHES]
    machine = provenance({})
    table = Table(
        title=f"models on the JVM and in Python, {machine['cpu']} ({machine['isa']}), {machine['threads']} cores"
    )
    for column in ("model", "file", "runtime", "batch", "samples/s", "p50 ms", "p99 ms"):
        table.add_column(column, justify="left" if column in ("model", "file", "runtime") else "right")
    for row in sorted(rows, key=lambda row: (row["file"].split("/")[-2], row["batch"], row["file"], row["runtime"])):
        path = Path(row["file"])
        table.add_row(
            path.parent.name,
            path.name,
            row["runtime"],
            str(row["batch"]),
            f"{row['samplesPerSecond']:,.0f}",
            f"{row['p50Ms']:.3f}",
            f"{row['p99Ms']:.3f}",
        )
    report(table, {"machine": machine, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
