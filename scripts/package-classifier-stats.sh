#!/usr/bin/env bash
# Ship the MNIST statistics of models/mnist-classifier.onnx beside it (feature mean and covariance of the test set,
# real-data metrics, the classifier's digest), so `ganport eval` works where MNIST is not installed (a wheel install).
# Run again whenever the classifier changes; eval ignores statistics made for another classifier.
set -euo pipefail
cd "$(dirname "$0")/.."
cache=$(mktemp -d)
trap 'rm -rf "$cache"' EXIT
rm -f models/mnist-classifier-mnist-stats.npz
GANPORT_CACHE_DIR="$cache" .venv/bin/python -c '
from ganport.evaluate import Classifier, classifier_path, real_baseline
real_baseline(Classifier(classifier_path()))'
cp "$cache"/mnist-test-stats-v2-*.npz models/mnist-classifier-mnist-stats.npz
echo "models/mnist-classifier-mnist-stats.npz: $(du -h models/mnist-classifier-mnist-stats.npz | cut -f1)"
