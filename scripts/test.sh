#!/usr/bin/env bash
# Lint, then every test: data, training, resume, exports with parity, sampling, error paths, DL4J via Maven.
set -euo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check ganport tests bench java-check/src/test/python
.venv/bin/ruff format --check --quiet ganport tests bench java-check/src/test/python
.venv/bin/python -m pytest "$@"
