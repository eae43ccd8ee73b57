#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, then run them.
# Extra arguments go to pytest (e.g. scripts/test.sh -k webhook).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/venv.sh
exec .venv/bin/python -m pytest "$@"
