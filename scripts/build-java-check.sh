#!/usr/bin/env bash
# Build java-check (DL4J 1.0.0-M2.1, linux-x86_64 natives only) and say how long it took and what it downloaded.
# Maven keeps its downloads in ~/.m2, so only the first build on a machine is cold.
set -euo pipefail
cd "$(dirname "$0")/../java-check"
repository="${HOME}/.m2/repository"
before=$(du -sm "$repository" 2>/dev/null | cut -f1 || true)
started=$(date +%s)
mvn -B -q -DskipTests package
seconds=$(( $(date +%s) - started ))
after=$(du -sm "$repository" 2>/dev/null | cut -f1 || echo 0)
echo "java-check: built in ${seconds} s; ~/.m2 grew by $(( after - ${before:-0} )) MB (now ${after} MB)"
