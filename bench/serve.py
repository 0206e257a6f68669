"""`ganport serve` under load, in one run: requests/s, samples/s, p50/p99 latency and mean batch size.

Scenarios: one-image requests from 64 concurrent clients (closed loop) with micro-batching and with --max-batch 1,
JSON and binary tensors; 16-image binary requests; fixed-rate open-loop runs at half the measured peak; for the MLP
reference and for a convolutional generator (models/mnist-dcgan if shipped, else a DCGAN generator the bench builds
with random weights: the same compute). The in-process Generator at batch 64 and 1024 is the ceiling. Then a soak.

The load generator is oha (`cargo install oha`; open-loop runs use its --latency-correction, so latency counts from
when a request was due, not from when a busy client got round to it). It shares the 2 cores with the server.
Everything runs against 127.0.0.1, bounded in time. A table on stdout and JSON on disk.

    python bench/serve.py [--mlp models/mnist-gan/generator.onnx] [--conv models/mnist-dcgan/generator.onnx]
        [--seconds 10] [--runs 3] [--soak 60] [--json bench/serve.json]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from common import report
from rich.table import Table

# The tests' helper that starts `ganport serve` in its own process and reads its URL.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from serving import running_server

from ganport.protocol import HEADER_LENGTH
from ganport.runtime import Generator

CLIENTS = 64
MODEL = "model"
OPEN_LOOP_SHARE = 0.5


def oha_command() -> str:
    found = shutil.which("oha") or str(Path.home() / ".cargo" / "bin" / "oha")
    if not Path(found).exists():
        sys.exit("bench/serve.py needs the load generator oha: cargo install oha --locked")
    return found


def conv_generator(path: Path | None, scratch: Path) -> Path:
    """The shipped DCGAN generator, or one built here with random weights (same layers, same compute)."""
    if path is not None and path.exists():
        return path
    import keras

    from ganport.export import export
    from ganport.models import ARCHITECTURES

    keras.utils.set_random_seed(0)
    model = ARCHITECTURES["dcgan"].build_generator(100)
    source = scratch / "generator.keras"
    model.save(source)
    (exported,) = export(source, "onnx", scratch / "dcgan.onnx", log=lambda line: None)
    return exported.path


def in_process(path: Path, batch: int, seconds: float = 3.0) -> float:
    """Samples/s of Generator.generate at `batch` (median of timed calls after warm-up)."""
    generator = Generator(path, device="cpu")
    noise = np.random.default_rng(0).standard_normal((batch, generator.latent_dim)).astype(np.float32)
    out = np.empty((batch, *generator.image_shape), np.float32)
    for _ in range(3):
        generator.generate(noise, out)
    times = []
    started = time.perf_counter()
    while time.perf_counter() - started < seconds or len(times) < 5:
        begin = time.perf_counter()
        generator.generate(noise, out)
        times.append(time.perf_counter() - begin)
    return batch / statistics.median(times)


def request_body(path: Path, rows: int, binary: bool, folder: Path) -> tuple[Path, list[str]]:
    """An infer request for `rows` images as a file, and the headers it needs."""
    generator = Generator(path, device="cpu")
    noise = np.random.default_rng(1).standard_normal((rows, generator.latent_dim)).astype(np.float32)
    tensor = {"name": generator.input_name, "datatype": "FP32", "shape": [rows, generator.latent_dim]}
    inputs = [tensor]
    labels = np.zeros((rows, 1), np.int64)
    if generator.conditional:
        inputs.append({"name": generator.label_name, "datatype": "INT64", "shape": [rows, 1]})
    body_file = folder / f"{path.stem}-{rows}-{'binary' if binary else 'json'}.body"
    if binary:
        tensor["parameters"] = {"binary_data_size": noise.nbytes}
        if generator.conditional:
            inputs[1]["parameters"] = {"binary_data_size": labels.nbytes}
        header = json.dumps({"inputs": inputs, "parameters": {"binary_data_output": True}}).encode()
        blobs = [noise.tobytes(), labels.tobytes()] if generator.conditional else [noise.tobytes()]
        body_file.write_bytes(header + b"".join(blobs))
        return body_file, ["Content-Type: application/octet-stream", f"{HEADER_LENGTH}: {len(header)}"]
    tensor["data"] = noise.ravel().tolist()
    if generator.conditional:
        inputs[1]["data"] = labels.ravel().tolist()
    body_file.write_text(json.dumps({"inputs": inputs}))
    return body_file, ["Content-Type: application/json"]


def batch_totals(url: str) -> tuple[float, float]:
    """Sum and count of the server's batch-size histogram, over all models."""
    text = urllib.request.urlopen(f"{url}/metrics", timeout=10).read().decode()
    total = count = 0.0
    for line in text.splitlines():
        match = re.match(r"ganport_batch_size_(sum|count)\{.*\} (\S+)", line)
        if match:
            if match.group(1) == "sum":
                total += float(match.group(2))
            else:
                count += float(match.group(2))
    return total, count


def load(
    oha: str, server: str, body: Path, headers: list[str], seconds: float, rate: float | None = None
) -> dict[str, float]:
    """One oha run against the served model: closed loop with CLIENTS connections, or open loop at `rate`/s."""
    command = [oha, "-z", f"{seconds}s", "-c", str(CLIENTS), "-m", "POST", "-D", str(body), "--no-tui"]
    command += ["--output-format", "json", "--wait-ongoing-requests-after-deadline"]
    for header in headers:
        command += ["-H", header]
    if rate is not None:
        command += ["-q", str(rate), "--latency-correction"]
    before = batch_totals(server)
    finished = subprocess.run(
        [*command, f"{server}/v2/models/{MODEL}/infer"], capture_output=True, text=True, check=True
    )
    after = batch_totals(server)
    result = json.loads(finished.stdout)
    statuses = {int(code): count for code, count in result.get("statusCodeDistribution", {}).items()}
    errors = sum(result.get("errorDistribution", {}).values()) + sum(
        count for code, count in statuses.items() if code != 200
    )
    batches = after[1] - before[1]
    return {
        "requests_per_s": result["summary"]["requestsPerSec"],
        "p50_ms": 1000 * result["latencyPercentiles"]["p50"],
        "p99_ms": 1000 * result["latencyPercentiles"]["p99"],
        "errors": errors,
        "mean_batch": (after[0] - before[0]) / batches if batches else 0.0,
    }


def median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    """The run with the median requests/s (its latencies and batch sizes belong together); errors summed."""
    ordered = sorted(runs, key=lambda run: run["requests_per_s"])
    chosen = dict(ordered[len(ordered) // 2])
    chosen["errors"] = sum(run["errors"] for run in runs)
    chosen["requests_per_s_each_run"] = [run["requests_per_s"] for run in runs]
    return chosen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mlp", type=Path, default=Path("models/mnist-gan/generator.onnx"))
    parser.add_argument("--conv", type=Path, default=Path("models/mnist-dcgan/generator.onnx"))
    parser.add_argument("--seconds", type=float, default=10, help="length of each load run")
    parser.add_argument("--runs", type=int, default=3, help="runs per scenario (the median is reported)")
    parser.add_argument("--soak", type=float, default=60, help="seconds of the closing soak (0: none)")
    parser.add_argument("--json", type=Path, default=Path("bench/serve.json"))
    args = parser.parse_args()
    oha = oha_command()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

    with tempfile.TemporaryDirectory() as scratch_name:
        scratch = Path(scratch_name)
        models = {"mlp": args.mlp, "conv": conv_generator(args.conv, scratch)}
        ceiling = {(kind, batch): in_process(path, batch) for kind, path in models.items() for batch in (1, 64, 1024)}
        rows = []

        def scenario(kind: str, images: int, binary: bool, max_batch: int, open_loop_of: dict | None = None) -> dict:
            path = models[kind]
            body, headers = request_body(path, images, binary, scratch)
            with running_server(path, "--name", MODEL, "--max-batch", max_batch) as server:
                load(oha, server.url, body, headers, 2)  # warm-up
                rate = None if open_loop_of is None else OPEN_LOOP_SHARE * open_loop_of["requests_per_s"]
                runs = [load(oha, server.url, body, headers, args.seconds, rate) for _ in range(args.runs)]
            row = {
                "model": kind,
                "images_per_request": images,
                "tensors": "binary" if binary else "JSON",
                "max_batch": max_batch,
                "load": f"open loop {rate:.0f}/s" if rate else f"closed loop, {CLIENTS} clients",
                **median_run(runs),
            }
            row["samples_per_s"] = row["requests_per_s"] * images
            rows.append(row)
            print(json.dumps(row), flush=True)
            return row

        mlp_json = scenario("mlp", 1, False, 256)
        scenario("mlp", 1, False, 1)
        scenario("mlp", 1, True, 256)
        mlp_16 = scenario("mlp", 16, True, 256)
        scenario("mlp", 1, False, 256, open_loop_of=mlp_json)
        conv_batched = scenario("conv", 1, True, 256)
        conv_single = scenario("conv", 1, True, 1)
        scenario("conv", 1, True, 256, open_loop_of=conv_batched)
        soak = None
        if args.soak:
            body, headers = request_body(models["mlp"], 1, False, scratch)
            with running_server(models["mlp"], "--name", MODEL) as server:
                soak = load(oha, server.url, body, headers, args.soak)
            print(json.dumps({"soak_s": args.soak, **soak}), flush=True)

    table = Table(title=f"ganport serve on this machine ({os.cpu_count()} cores, shared with the load generator oha)")
    for column in (
        "model",
        "images/request",
        "tensors",
        "max batch",
        "load",
        "requests/s",
        "samples/s",
        "p50 ms",
        "p99 ms",
        "mean batch",
        "errors",
    ):
        table.add_column(column, justify="left" if column in ("model", "tensors", "load") else "right")
    for row in rows:
        table.add_row(
            row["model"],
            str(row["images_per_request"]),
            row["tensors"],
            str(row["max_batch"]),
            row["load"],
            f"{row['requests_per_s']:,.0f}",
            f"{row['samples_per_s']:,.0f}",
            f"{row['p50_ms']:.1f}",
            f"{row['p99_ms']:.1f}",
            f"{row['mean_batch']:.1f}",
            str(row["errors"]),
        )
    for (kind, batch), rate in ceiling.items():
        table.add_row(kind, str(batch), "in process", "", "Generator.generate", "", f"{rate:,.0f}", "", "", "", "")
    checks = {
        "mlp_json_requests_per_s": mlp_json["requests_per_s"],
        "mlp_16_binary_share_of_in_process_batch_64": mlp_16["samples_per_s"] / ceiling[("mlp", 64)],
        "conv_batching_speedup": conv_batched["requests_per_s"] / conv_single["requests_per_s"],
        "open_loop_p99_ms": {row["model"]: row["p99_ms"] for row in rows if row["load"].startswith("open")},
        "soak": soak,
    }
    report(
        table,
        {"rows": rows, "in_process_samples_per_s": {f"{k}@{b}": v for (k, b), v in ceiling.items()}, "checks": checks},
        args.json,
    )
    print(json.dumps(checks, indent=2))


if __name__ == "__main__":
    main()
