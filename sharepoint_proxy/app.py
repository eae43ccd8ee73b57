"""Build the Flask application: the webhook, health, readiness and metrics endpoints."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from flask import Flask, Response, jsonify, request
from minio.error import S3Error

from . import metrics
from .auth import authenticate
from .config import Config
from .errors import (
    JournalError,
    PayloadTooLargeError,
    ProxyError,
    RequestError,
    ThrottledError,
    UnauthenticatedError,
)
from .events import parse_notification
from .graph import RETRY_BUDGET_SECONDS, GraphClient
from .journal import Journal
from .locks import KeyLocks
from .minio_source import MinioSource
from .mirror import Mirror
from .startup import JOURNAL_FILE, LOCKS_DIRECTORY, resolve_library
from .tokens import TokenProvider
from .worker import Dispatcher

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
READINESS_CACHE_SECONDS = 5.0


@dataclass
class Services:
    """Everything the app talks to, wired once per process; tests build their own."""

    config: Config
    source: MinioSource
    tokens: TokenProvider
    graph: GraphClient
    journal: Journal
    mirror: Mirror
    dispatcher: Dispatcher

    @classmethod
    def from_config(
        cls,
        config: Config,
        *,
        retry_budget_seconds: float = RETRY_BUDGET_SECONDS,
        journal: Journal | None = None,
    ) -> Services:
        """Wire the production adapters from the configuration (no network call yet)."""
        tokens = TokenProvider(config)
        graph = GraphClient(
            config, tokens, on_response=metrics.observe_graph, retry_budget_seconds=retry_budget_seconds
        )
        source = MinioSource.from_config(config)
        journal = journal or Journal(config.state_dir / JOURNAL_FILE)
        locks = KeyLocks(config.state_dir / LOCKS_DIRECTORY)
        mirror = Mirror(source, graph, target_folder=config.target_folder, locks=locks, ledger=journal)
        dispatcher = Dispatcher(journal, mirror, deadline_seconds=config.response_deadline_seconds)
        return cls(config, source, tokens, graph, journal, mirror, dispatcher)

    def close(self) -> None:
        """Stop background work (it stays journaled) and close connections."""
        self.dispatcher.close()


@dataclass
class Readiness:
    """Check, at most every few seconds, that the library, the token, Graph and MinIO answer."""

    services: Services
    _checked_at: float = 0.0
    _problems: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def problems(self) -> list[str]:
        """Return what is not ready now (empty when ready), from a cache of a few seconds."""
        with self._lock:
            if time.monotonic() - self._checked_at > READINESS_CACHE_SECONDS:
                self._problems = self._check()
                self._checked_at = time.monotonic()
            return list(self._problems)

    def _check(self) -> list[str]:
        problems = []
        services = self.services
        try:
            services.tokens.token()
        except ProxyError as exc:
            problems.append(f"token: {exc}")
        try:
            services.graph.probe()  # resolves the library first if it is not yet
        except ThrottledError:
            pass  # Graph answers and asks us to slow down: events are still taken and journaled
        except ProxyError as exc:
            problems.append(f"graph: {exc}")
        try:
            services.source.client.list_buckets()
        except S3Error as exc:
            if exc.code != "AccessDenied":  # AccessDenied: it answers; this user may not list buckets
                problems.append(f"minio: {exc.code}")
        except Exception as exc:  # whatever the failure, MinIO is not usable now: say which
            problems.append(f"minio: {type(exc).__name__}")
        return problems


def create_app(config: Config, *, services: Services | None = None) -> Flask:
    """Build the application around `services` (the production ones unless given)."""
    services = services or Services.from_config(config)
    resolve_library(config, services.graph)  # ConfigError if unknown or refused; an outage only logs
    services.dispatcher.start()
    readiness = Readiness(services)
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = None  # we enforce the limit ourselves, before reading
    app.extensions["sharepoint_proxy"] = services

    @app.post("/s3event")
    def s3event() -> tuple[Response, int]:
        started = time.perf_counter()
        body = _read_authenticated_body(config.webhook_secret)
        if not body.strip():
            return jsonify(outcomes=[]), 200  # MinIO's reachability ping
        records = parse_notification(body)
        outcomes = services.dispatcher.submit(records)
        metrics.WEBHOOK_SECONDS.observe(time.perf_counter() - started)
        pending = any(o.outcome == "pending" for o in outcomes)
        # 202: not applied yet, but durably journaled; it completes in the background.
        return jsonify(outcomes=[o.as_json() for o in outcomes]), 202 if pending else 200

    @app.get("/healthz")
    def healthz() -> tuple[Response, int]:
        return jsonify(status="ok"), 200

    @app.get("/readyz")
    def readyz() -> tuple[Response, int]:
        problems = readiness.problems()
        if problems:
            return jsonify(status="unavailable", problems=problems), 503
        return jsonify(status="ready"), 200

    @app.get("/metrics")
    def metrics_endpoint() -> Response:
        payload, content_type = metrics.render()
        return Response(payload, content_type=content_type)

    @app.errorhandler(RequestError)
    def refuse(exc: RequestError) -> tuple[Response, int]:
        return jsonify(error=exc.reason, message=exc.message), exc.status

    @app.errorhandler(JournalError)
    def journal_down(exc: JournalError) -> tuple[Response, int]:
        log.error("journal.unwritable", extra={"detail": str(exc)})
        return jsonify(error="journal_unavailable", message=str(exc)), 503

    return app


def _read_authenticated_body(secret: str) -> bytes:
    """Return the raw body once the request is authenticated; refuse oversized bodies unread.

    The order is DESIGN.md's: 401, then 403, then 413. A bearer token is checked before the
    body is read; a signature needs the body, so it is checked after the size.
    """
    headers = request.headers
    if not headers.get("Authorization") and not headers.get("X-Minio-Signature"):
        raise UnauthenticatedError("missing Authorization or X-Minio-Signature header")
    if not headers.get("X-Minio-Signature"):
        authenticate(headers, b"", secret=secret)  # bearer only: the body plays no part
    if (request.content_length or 0) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"body over {MAX_BODY_BYTES} bytes")
    body = request.stream.read(MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        raise PayloadTooLargeError(f"body over {MAX_BODY_BYTES} bytes")
    authenticate(request.headers, body, secret=secret)
    return body
