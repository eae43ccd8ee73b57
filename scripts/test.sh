#!/usr/bin/env bash
# Set up a virtual environment with everything the tests need, then run them.
# Extra arguments go to pytest (e.g. scripts/test.sh -k webhook).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
exec .venv/bin/python -m pytest "$@"
