#!/usr/bin/env bash
# Fill models/NAME/ from a finished run: ONNX (fp32 folded + int8), DL4J-ready HDF5 with test vectors, a sample
# grid, the eval metrics and the run's config and metrics. The model card (README.md there) is written by hand.
#   scripts/package-reference-model.sh RUN_FOLDER models/mnist-gan
set -euo pipefail
cd "$(dirname "$0")/.."
run="$1"; target="$2"
ganport=.venv/bin/ganport
mkdir -p "$target"
$ganport export "$run" --format onnx --out "$target"
$ganport export "$run" --format onnx --precision int8 --out "$target"
$ganport export "$run" --format h5 --out "$target"
$ganport sample "$target/generator.onnx" -n 100 --seed 0 --out "$target/samples.png"
$ganport eval "$target/generator.onnx" --json "$target/eval.json" --png "$target/eval.png"
cp "$run/config.json" "$run/metrics.jsonl" "$target/"
