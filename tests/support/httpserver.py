"""Run a threaded HTTPS/1.1 server on 127.0.0.1 in a daemon thread, and take it down on demand.

The TLS handshake happens in each connection's own thread (not in the accept loop), so a
stuck client cannot stall the server. `down()` stops listening and cuts every open
connection, so clients see connection errors; `up()` listens again on the same port.
"""

from __future__ import annotations

import contextlib
import json
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, Self

_READ_PIECE = 1024 * 1024
HANDSHAKE_TIMEOUT = 10.0


class _TLSHTTPServer(ThreadingHTTPServer):
    """Serve HTTPS, one thread per connection, and remember connections so they can be cut."""

    daemon_threads = True
    block_on_close = False

    def __init__(
        self,
        address: tuple[str, int],
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        app: object,
    ) -> None:
        super().__init__(address, handler)
        self.context = context
        self.app = app
        self._connections: set[ssl.SSLSocket] = set()
        self._lock = threading.Lock()

    def finish_request(self, request: Any, client_address: Any) -> None:
        """Do the TLS handshake, then serve the connection until either side closes it."""
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            connection = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        with self._lock:
            self._connections.add(connection)
        try:
            super().finish_request(connection, client_address)
        except (OSError, ssl.SSLError, ValueError):
            pass  # The client went away, or down() cut the connection.
        finally:
            with self._lock:
                self._connections.discard(connection)
            with contextlib.suppress(OSError):
                connection.close()

    def cut_connections(self) -> None:
        """Shut down every open connection at the socket level."""
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Stay quiet: a test server's broken connections are expected, not news."""



class Service:
    """A local server started on entering a `with` block and stopped on leaving it."""

    def start(self) -> None:
        """Start serving."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop serving."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        """Start and return the server."""
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        """Stop the server."""
        self.stop()


class ServerRunner:
    """Start, stop, take down and bring back one `_TLSHTTPServer` on a fixed port."""

    def __init__(
        self,
        handler: type[BaseHTTPRequestHandler],
        context: ssl.SSLContext,
        app: object,
    ) -> None:
        """Prepare a server for `app`; nothing listens until `start()`."""
        self._handler = handler
        self._context = context
        self._app = app
        self._server: _TLSHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    @property
    def running(self) -> bool:
        """Tell whether the server is listening."""
        return self._server is not None

    def start(self) -> None:
        """Listen on 127.0.0.1 (on the previous port if there was one) and serve in a thread."""
        if self._server is not None:
            return
        server = _TLSHTTPServer(
            ("127.0.0.1", self.port), self._handler, self._context, self._app
        )
        self.port = server.server_address[1]
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"{type(self._app).__name__}:{self.port}",
            daemon=True,
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop listening and cut every open connection."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        server.cut_connections()
        if self._thread is not None:
            self._thread.join(timeout=5)


class JSONHandler(BaseHTTPRequestHandler):
    """Speak HTTP/1.1 with keep-alive: always a Content-Length, JSON helpers, no logging."""

    protocol_version = "HTTP/1.1"
    timeout = 60
    # Headers and body go out in two sends; with Nagle's algorithm the body would wait for
    # the client's delayed ACK (~40 ms on Linux), a stall real servers do not have.
    disable_nagle_algorithm = True
    server: _TLSHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        """Keep test output clean."""

    def read_body(self, limit: int | None = None) -> bytes | bytearray:
        """Read the request body (by Content-Length, or chunked), at most `limit` bytes."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            return self._read_chunked()
        length = int(self.headers.get("Content-Length") or 0)
        if limit is not None:
            length = min(length, limit)
        return self.read_exactly(length)

    def read_exactly(self, length: int) -> bytearray:
        """Read exactly `length` bytes of body, or raise ConnectionError when the peer stops."""
        buffer = bytearray(length)
        view = memoryview(buffer)
        filled = 0
        while filled < length:
            got = self.rfile.readinto(view[filled:])
            if not got:
                raise ConnectionError("request body ended early")
            filled += got
        return buffer

    def discard_body(self) -> None:
        """Read and drop whatever body the request carries, so the connection stays usable."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            self._read_chunked()
            return
        remaining = int(self.headers.get("Content-Length") or 0)
        while remaining > 0:
            piece = self.rfile.read(min(remaining, _READ_PIECE))
            if not piece:
                raise ConnectionError("request body ended early")
            remaining -= len(piece)

    def _read_chunked(self) -> bytearray:
        body = bytearray()
        while True:
            size_line = self.rfile.readline(1024)
            size = int(size_line.split(b";")[0].strip() or b"0", 16)
            if size == 0:
                while self.rfile.readline(1024) not in (b"\r\n", b"\n", b""):
                    pass  # Trailers.
                return body
            body += self.rfile.read(size)
            self.rfile.readline(1024)

    def send_json(
        self, status: int, payload: object, headers: dict[str, str] | None = None
    ) -> None:
        """Answer `status` with `payload` as JSON (or with no body for 204)."""
        body = b"" if status == 204 else json.dumps(payload).encode()
        self.send_response(status)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 204:
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def drop_connection(self) -> None:
        """Close the connection without answering."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)
