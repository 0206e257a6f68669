#!/usr/bin/env bash
# Fill models/NAME/ from a finished run: ONNX (fp32 folded + int8 where its gates pass), DL4J-ready HDF5 with test
# vectors, a sample grid, the eval metrics and the run's config and metrics. The model card (README.md there) is
# written by hand.
#   scripts/package-reference-model.sh RUN_FOLDER models/mnist-gan [SAMPLE OPTIONS, default: -n 100]
#   scripts/package-reference-model.sh runs/mnist-cgan models/mnist-cgan --label 0-9 -n 10
set -euo pipefail
cd "$(dirname "$0")/.."
run="$1"; target="$2"; shift 2
sample_options=("$@")
[ ${#sample_options[@]} -gt 0 ] || sample_options=(-n 100)
ganport=.venv/bin/ganport
mkdir -p "$target"
$ganport export "$run" --format onnx --out "$target" --overwrite
# int8 ships only where its gates pass (quality, and speed on this CPU); a refusal is printed and the card says why
$ganport export "$run" --format onnx --precision int8 --out "$target" --overwrite \
    || echo "no generator_int8.onnx in $target: the export refused it (above)" >&2
$ganport export "$run" --format h5 --out "$target" --overwrite
$ganport sample "$target/generator.onnx" "${sample_options[@]}" --seed 0 --out "$target/samples.png"
$ganport eval "$target/generator.onnx" --json "$target/eval.json" --png "$target/eval.png"
cp "$run/config.json" "$run/metrics.jsonl" "$target/"
