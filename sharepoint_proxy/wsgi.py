"""Give gunicorn the application: `gunicorn sharepoint_proxy.wsgi:app`."""

import os

from sharepoint_proxy.cli import USAGE, build_app_from_env

# gunicorn's code for "the application failed to load": the master stops instead of forking
# a new worker that would fail the same way, forever. Only for a bad setup (settings,
# certificate, library), which gunicorn.conf.py's preflight normally finds before any fork;
# other failures (STATE_DIR full or locked) may pass, so gunicorn replaces the worker.
GUNICORN_APP_LOAD_ERROR = 4

try:
    app = build_app_from_env(os.environ)
except SystemExit as exc:
    if exc.code == USAGE:
        raise SystemExit(GUNICORN_APP_LOAD_ERROR) from exc
    raise
