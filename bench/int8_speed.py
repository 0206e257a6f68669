"""int8 against float32 on onnxruntime (Python, CPU), in one run: the shipped models' generators and critics.

Each model is exported twice by ganport (fp32 with BatchNorm folded; int8, which is static QDQ with per-channel
weights for graphs with convolutions and dynamic otherwise, written with --force so that a slower file is measured
too), then both files are timed at batch 1, 64 and 1024 with calls in turns (fp32, int8, fp32, ...; the export's
speed gate times the same way) for about --seconds each: samples/s from the median call, and the int8/fp32 ratio.
The int8 files' quality-gate figures (classifier score, or signal-to-noise against fp32) come from the export.

    .venv/bin/python bench/int8_speed.py [--seconds 2] [--json bench/results/DATE-int8_speed.json]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from common import report
from rich.table import Table

from ganport import onnx_io
from ganport.evaluate import score_generator
from ganport.export import ExportOptions, export
from ganport.export.quality import seconds_in_turns
from ganport.host import provenance
from ganport.runtime import SHIPPED_MODELS

MODELS = ["mnist-gan", "mnist-cgan", "mnist-dcgan"]
ROLES = ["generator", "discriminator"]
BATCHES = [1, 64, 1024]


def feeds_for(session: object, batch: int) -> dict[str, np.ndarray]:
    """Inputs of the model's declared shapes: class labels 0-9, noise or images elsewhere."""
    rng = np.random.default_rng(0)
    inputs, _ = onnx_io.signature(session)
    return {
        item.name: rng.integers(0, 10, (batch, *item.shape[1:])).astype(item.dtype)
        if "int" in str(item.dtype)
        else rng.uniform(-1, 1, (batch, *item.shape[1:])).astype(np.float32)
        for item in inputs
    }


def quantization(path: Path) -> str:
    """How the int8 file was quantized: static QDQ nodes, or dynamic quantization's run-time ones."""
    operators = {node.op_type for node in onnx_io.load(path).graph.node}
    return "static" if "QuantizeLinear" in operators else "dynamic"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="timed seconds per model and batch size")
    parser.add_argument("--json", help="write the measurements here")
    args = parser.parse_args()
    rows = []
    quiet = lambda line: None  # noqa: E731
    int8_options = ExportOptions(precision="int8", force=True, score=lambda path: score_generator(path, log=quiet))
    with tempfile.TemporaryDirectory() as scratch:
        for name in MODELS:
            for role in ROLES:
                source, out = SHIPPED_MODELS / name / f"{role}.h5", Path(scratch) / name
                (fp32,) = export(source, "onnx", out, log=quiet, options=ExportOptions())
                (int8,) = export(source, "onnx", out, log=quiet, options=int8_options)
                sessions = [onnx_io.open_session(file, "cpu") for file in (fp32.path, int8.path)]
                for batch in BATCHES:
                    feeds = feeds_for(sessions[0], batch)
                    fp32_seconds, int8_seconds = seconds_in_turns(sessions, feeds, args.seconds, min_calls=10)
                    rows.append(
                        {
                            "model": name,
                            "role": role,
                            "int8": quantization(int8.path),
                            "batch": batch,
                            "fp32_samples_per_s": batch / fp32_seconds,
                            "int8_samples_per_s": batch / int8_seconds,
                            "ratio": fp32_seconds / int8_seconds,
                            "quality": int8.quality,
                        }
                    )
                    print(rows[-1], flush=True)
    machine = provenance({})
    table = Table(
        title=f"int8 vs fp32 on onnxruntime, {machine['cpu']} ({machine['isa']}), {machine['threads']} threads"
    )
    for column in ("model", "role", "int8", "batch", "fp32 samples/s", "int8 samples/s", "int8/fp32", "quality"):
        table.add_column(column, justify="left" if column in ("model", "role", "int8", "quality") else "right")
    for row in rows:
        quality = row["quality"]
        judged = (
            f"score {quality['classifier_score']:.3f} vs {quality['fp32_classifier_score']:.3f}"
            if "classifier_score" in quality
            else f"{quality['sqnr_db']:.1f} dB"
        )
        table.add_row(
            row["model"],
            row["role"],
            row["int8"],
            str(row["batch"]),
            f"{row['fp32_samples_per_s']:,.0f}",
            f"{row['int8_samples_per_s']:,.0f}",
            f"{row['ratio']:.2f}x",
            judged,
        )
    report(table, {"machine": machine, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
