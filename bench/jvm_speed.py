"""The JVM routes' speed beside Python's, on the same files in one run: samples/s and p50/p99 latency per batch size.

Runs java-check's SpeedBench (DL4J on each reference generator's HDF5 file, ONNX Runtime for Java on its fp32 and
int8 ONNX files), then Python's onnxruntime on the same ONNX files, timed the same way: 1 s of warm-up, then calls
for about --seconds (at least 10), the median call giving samples/s. Both use one thread per core: OMP_NUM_THREADS
for DL4J (ND4J's native CPU backend), onnxruntime's default intra-op pool elsewhere.

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

from ganport.host import provenance
from ganport.runtime import SHIPPED_MODELS
from ganport.verify import build_java_check

MODELS = ["mnist-gan", "mnist-cgan", "mnist-dcgan"]
BATCHES = [1, 64, 1024]


def java_rows(files: list[Path], seconds: float) -> list[dict]:
    classpath = build_java_check()
    cores = str(os.cpu_count())
    env = {**os.environ, "OMP_NUM_THREADS": cores}
    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "speed.json"
        command = ["java", "-cp", os.pathsep.join(classpath), "ganport.dl4j.SpeedBench", str(out), str(seconds)]
        subprocess.run(
            [*command, ",".join(map(str, BATCHES)), *map(str, files)], env=env, check=True, capture_output=True
        )
        return json.loads(out.read_text())


def python_row(file: Path, batch: int, seconds: float) -> dict:
    import onnxruntime

    session = onnxruntime.InferenceSession(str(file), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    feeds = {
        item.name: rng.integers(0, 10, (batch, 1)).astype(np.int64)
        if item.type == "tensor(int64)"
        else rng.standard_normal((batch, item.shape[-1])).astype(np.float32)
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per file and batch size")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    onnx_files = [SHIPPED_MODELS / name / file for name in MODELS for file in ("generator.onnx", "generator_int8.onnx")]
    h5_files = [SHIPPED_MODELS / name / "generator.h5" for name in MODELS]
    rows = java_rows(h5_files + onnx_files, args.seconds)
    rows += [python_row(file, batch, args.seconds) for file in onnx_files for batch in BATCHES]
    machine = provenance({})
    table = Table(
        title=f"generators on the JVM and in Python, {machine['cpu']} ({machine['isa']}), {machine['threads']} cores"
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
