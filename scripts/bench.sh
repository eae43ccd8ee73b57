#!/usr/bin/env bash
# Run the benchmarks (README: Performance). Extra arguments go to tests/benchmarks/run.py,
# e.g. scripts/bench.sh --large-mib 50 --events 100 for a quick run.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec .venv/bin/python -m tests.benchmarks.run "$@"
