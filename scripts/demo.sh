#!/usr/bin/env bash
# See the whole chain work on this machine: no tenant, no Docker (see tests/demo.py).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec .venv/bin/python -m tests.demo
