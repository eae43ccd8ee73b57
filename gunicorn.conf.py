"""Gunicorn settings: `gunicorn --config gunicorn.conf.py sharepoint_proxy.wsgi:app`."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any


def _env_number(name: str, default: int) -> int:
    """Read a whole number from the environment; the app's config check reports bad values."""
    try:
        return int(float(os.environ.get(name, default)))
    except ValueError:
        return default


bind = f"0.0.0.0:{_env_number('PORT', 8080)}"
worker_class = "gthread"
workers = _env_number("WEB_CONCURRENCY", 2)
threads = _env_number("GUNICORN_THREADS", 8)

# A request may work up to RESPONSE_DEADLINE_SECONDS before it answers 202; a worker is only
# killed as stuck well after that.
timeout = _env_number("RESPONSE_DEADLINE_SECONDS", 45) + 30
# On SIGTERM, in-flight transfers get this long to finish or be journaled for a retry.
graceful_timeout = 60

accesslog = "-"
errorlog = "-"

if os.environ.get("LOG_FORMAT", "").strip().lower() == "json":
    # gunicorn's own lines (start, workers, access) as JSON on stdout too, like the app's.
    logconfig_dict = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"json": {"()": "sharepoint_proxy.logs.JsonFormatter"}},
        "handlers": {
            "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        },
        "root": {"level": "INFO", "handlers": ["stdout"]},
        "loggers": {
            "gunicorn.error": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
            "gunicorn.access": {"level": "INFO", "handlers": ["stdout"], "propagate": False},
        },
    }

# No preload_app: each worker builds its own app, so the minio client (and its urllib3 pool)
# never crosses a fork.
preload_app = False

# Heartbeat files in RAM, not on the container's overlay filesystem.
if Path("/dev/shm").is_dir():
    worker_tmp_dir = "/dev/shm"

# Nobody drives gunicornc inside the container, and the image user has no home to put it in.
control_socket_disable = True


def on_starting(server: Any) -> None:
    """Check the setup once, before any worker is forked, and clear stale metric files.

    Settings, certificate, STATE_DIR and library are what every worker needs: if one is
    wrong, gunicorn stops here with one message (exit 2) instead of booting workers that
    fail the same way, again and again.
    """
    # Not the app: the master must not create metrics or keep network clients across the fork.
    from sharepoint_proxy.config import Config
    from sharepoint_proxy.errors import ConfigError
    from sharepoint_proxy.logs import configure_logging
    from sharepoint_proxy.startup import preflight

    try:
        config = Config.from_env(os.environ)
        configure_logging(config.log_level, config.log_format, stream=sys.stdout)
        preflight(config)
    except ConfigError as exc:
        print(f"sharepoint-proxy: {exc}", file=sys.stderr)
        raise SystemExit(2) from exc
    except Exception:  # an unforeseen failure of the check itself: workers check again
        logging.getLogger("sharepoint_proxy.startup").exception("preflight.failed")
    _clear_metric_files()


def _clear_metric_files() -> None:
    """Clear metric files left by an earlier run, so /metrics starts from this run's workers."""
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory:
        return
    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    for stale in path.glob("*.db"):
        stale.unlink(missing_ok=True)


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the multiprocess metrics."""
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        return
    # Imported here so the file loads where prometheus_client is not installed.
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)  # type: ignore[no-untyped-call]
