"""Run moto's S3 server on 127.0.0.1 in a thread, and count the requests it answers."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterable
from typing import Any

import minio
from moto.moto_server.threaded_moto_server import ThreadedMotoServer
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from tests.support.httpserver import Service

_WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class _QuietHandler(MotoRequestHandler):
    """Handle requests like moto, without a log line per request."""

    def log(self, type: str, message: str, *args: Any) -> None:
        """Keep test output clean."""


class _RecordingServer(ThreadedMotoServer):
    """Serve moto's WSGI app like ThreadedMotoServer, through a middleware that records requests."""

    def __init__(
        self, port: int, on_request: Callable[[str, str], tuple[int, str] | None]
    ) -> None:
        super().__init__(ip_address="127.0.0.1", port=port, verbose=False)
        self._on_request = on_request

    def _server_entry(self) -> None:
        moto_app: _WSGIApp = DomainDispatcherApplication(create_backend_app)

        def app(
            environ: dict[str, Any], start_response: Callable[..., Any]
        ) -> Iterable[bytes]:
            refusal = self._on_request(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""))
            if refusal is not None:
                status, code = refusal
                body = (
                    '<?xml version="1.0" encoding="UTF-8"?>'
                    f"<Error><Code>{code}</Code><Message>Refused by the test.</Message>"
                    "<RequestId>test</RequestId></Error>"
                ).encode()
                start_response(f"{status} Refused", [("Content-Type", "application/xml"),
                                                     ("Content-Length", str(len(body)))])
                return [body]
            return moto_app(environ, start_response)

        self._server = make_server(
            self._ip_address, self._port, app, True, request_handler=_QuietHandler
        )
        self._server_ready_event.set()
        self._server.serve_forever()


class S3Server(Service):
    """Serve an S3 API (moto) at `endpoint`, with MinIO's default credentials."""

    access_key = "minioadmin"
    secret_key = "minioadmin"
    region = "us-east-1"

    def __init__(self, port: int = 0) -> None:
        """Prepare the server on `port` (0: a free one)."""
        self._port = port or _free_port()
        self._lock = threading.Lock()
        self.requests: list[tuple[str, str]] = []
        self._refusals: dict[tuple[str, str], tuple[int, str]] = {}
        self._server = _RecordingServer(self._port, self._record)
        self._started = False

    def start(self) -> None:
        """Start serving in a daemon thread."""
        if not self._started:
            self._server.start()
            self._started = True

    def stop(self) -> None:
        """Stop serving."""
        if self._started:
            self._server.stop()
            self._started = False


    @property
    def host(self) -> str:
        """Return `127.0.0.1:<port>`, as the minio client takes it."""
        return f"127.0.0.1:{self._port}"

    @property
    def endpoint(self) -> str:
        """Return `http://127.0.0.1:<port>`."""
        return f"http://{self.host}"

    def client(self) -> minio.Minio:
        """Return a minio client for this server (plain HTTP, region set: no location lookups)."""
        return minio.Minio(
            self.host,
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region=self.region,
        )

    def count(self, method: str | None = None) -> int:
        """Return how many requests arrived, of `method` when given."""
        with self._lock:
            return sum(1 for m, _ in self.requests if method is None or m == method)

    def reset_counters(self) -> None:
        """Forget recorded requests."""
        with self._lock:
            self.requests = []

    def refuse(self, method: str, path: str, code: str, *, status: int = 403) -> None:
        """Answer every `method` request for exactly `path` with the S3 error `code`, until `allow()`."""
        with self._lock:
            self._refusals[(method, path)] = (status, code)

    def allow(self) -> None:
        """Stop refusing: every request goes to moto again."""
        with self._lock:
            self._refusals.clear()

    def _record(self, method: str, path: str) -> tuple[int, str] | None:
        with self._lock:
            self.requests.append((method, path))
            return self._refusals.get((method, path))


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
