"""Give gunicorn the application: `gunicorn sharepoint_proxy.wsgi:app`."""

import os

from sharepoint_proxy.cli import build_app_from_env

# gunicorn's code for "the application failed to load": the master stops instead of forking
# a new worker that would fail the same way, forever. The reason is already on stderr.
GUNICORN_APP_LOAD_ERROR = 4

try:
    app = build_app_from_env(os.environ)
except SystemExit as exc:
    raise SystemExit(GUNICORN_APP_LOAD_ERROR) from exc
