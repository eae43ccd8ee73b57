# Sourced by the scripts here: make .venv with everything the tests and demo need.
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
