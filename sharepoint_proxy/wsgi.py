"""Give gunicorn the application: `gunicorn sharepoint_proxy.wsgi:app`."""

import os

from sharepoint_proxy.cli import build_app_from_env

app = build_app_from_env(os.environ)
