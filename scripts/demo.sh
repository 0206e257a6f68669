#!/usr/bin/env bash
# The main job end to end on real MNIST: train, export (ONNX + DL4J-ready HDF5), sample through onnxruntime.
# ITERATIONS=30000 gives the lecture's full run (about 5 minutes on 2 cores); the default is a 2-minute run.
set -euo pipefail
cd "$(dirname "$0")/.."
iterations="${ITERATIONS:-10000}"
run="runs/demo-$(date +%Y%m%d-%H%M%S)"
ganport=.venv/bin/ganport

$ganport train --iterations "$iterations" --out "$run"
$ganport export "$run" --format onnx
$ganport export "$run" --format h5
$ganport sample "$run/export/generator.onnx" -n 64 --seed 0 --out "$run/samples.png"
echo "demo: done. Sample grid: $run/samples.png; exports: $run/export/; training grids: $run/samples/"
