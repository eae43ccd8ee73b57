"""Start-up checks shared by gunicorn's master, each worker and the `serve` command.

A setup that would stop every worker the same way (a setting, the certificate, STATE_DIR,
the site or library) is found once, by gunicorn's master before it forks: it stops with one
message instead of booting replacement workers that fail again, forever. This module must
not import the metrics: the master must not create metric files or network clients that
would outlive the check.
"""

from __future__ import annotations

import logging

from .config import Config
from .errors import ConfigError, JournalError, PermanentError, TransientError
from .graph import GraphClient
from .journal import Journal
from .locks import KeyLocks
from .tokens import TokenProvider

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.sqlite3"
LOCKS_DIRECTORY = "locks"
# The master waits this long for Graph at most; if it is away, workers resolve the library
# on first use (an outage at start must not stop the service).
PREFLIGHT_RETRY_SECONDS = 5.0


def site_fix(config: Config, exc: PermanentError) -> str:
    """Say what to change when Graph refuses the site or its libraries for good."""
    if exc.reason == "graph_access_denied":
        return (
            "grant the app access to the site: Sites.Selected with admin consent plus a 'write' "
            "site permission (README: Registering the Entra app), or Sites.ReadWrite.All"
        )
    return f"check SITE_PATH ({config.site_path}): host name and site path as in the site's URL"


def resolve_library(config: Config, graph: GraphClient) -> None:
    """Resolve the site and library now.

    An unknown library or a site Graph refuses raises ConfigError naming the fix; an outage
    only logs, and the library is resolved on first use.
    """
    try:
        drive = graph.resolve_drive()
    except TransientError as exc:
        log.warning("drive.unresolved", extra={"detail": str(exc)})
        return
    except PermanentError as exc:
        raise ConfigError([f"SITE_PATH: {exc}; {site_fix(config, exc)}"]) from exc
    log.info("drive.resolved", extra={"drive_id": drive.id, "library": drive.name, "url": drive.web_url})


def preflight(config: Config, *, retry_budget_seconds: float = PREFLIGHT_RETRY_SECONDS) -> None:
    """Check once what every worker needs: STATE_DIR, the certificate and key, the library.

    Raises ConfigError naming what to fix. Everything opened here is closed again, so
    nothing crosses the fork into the workers.
    """
    try:
        Journal(config.state_dir / JOURNAL_FILE).close()
        KeyLocks(config.state_dir / LOCKS_DIRECTORY)
    except JournalError as exc:
        raise ConfigError([f"STATE_DIR: {exc}"]) from exc
    tokens = TokenProvider(config)  # reads the certificate and key: ConfigError if they do not fit
    graph = GraphClient(config, tokens, retry_budget_seconds=retry_budget_seconds)
    try:
        resolve_library(config, graph)
    finally:
        graph.close()
        tokens.close()
