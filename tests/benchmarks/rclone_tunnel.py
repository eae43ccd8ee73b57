"""Tunnel HTTPS CONNECT requests for chosen hosts to local ports, for rclone's `HTTPS_PROXY`.

rclone's OneDrive backend only talks to graph.microsoft.com. With `HTTPS_PROXY` pointing
here, its `CONNECT graph.microsoft.com:443` is answered by a byte pipe to the fake Graph
(whose certificate names graph.microsoft.com); TLS stays end to end between rclone and it.
"""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from types import TracebackType
from typing import Self

BUFFER = 64 * 1024
CONNECT_TIMEOUT = 10.0


class _Handler(socketserver.BaseRequestHandler):
    server: _TunnelServer

    def handle(self) -> None:
        client: socket.socket = self.request
        head = b""
        while b"\r\n\r\n" not in head:
            more = client.recv(BUFFER)
            if not more:
                return
            head += more
            if len(head) > 16 * 1024:
                return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        method, _, rest = request_line.partition(" ")
        target = rest.partition(" ")[0]
        port = self.server.routes.get(target.lower())
        if method != "CONNECT" or port is None:
            client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return
        self.server.tunnels += 1
        with socket.create_connection(("127.0.0.1", port), timeout=CONNECT_TIMEOUT) as upstream:
            upstream.settimeout(None)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            pump = threading.Thread(target=_copy, args=(upstream, client), daemon=True)
            pump.start()
            _copy(client, upstream)
            pump.join(timeout=5)


def _copy(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(BUFFER):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)


class _TunnelServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, routes: dict[str, int]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.routes = routes
        self.tunnels = 0


class ConnectTunnel:
    """Answer `CONNECT host:443` for the hosts in `routes` by piping to `127.0.0.1:<port>`."""

    def __init__(self, routes: dict[str, int]) -> None:
        """Route each `host:port` key (lower case) to a local port; nothing listens until `start`."""
        self._server = _TunnelServer({k.lower(): v for k, v in routes.items()})
        self._thread = threading.Thread(target=self._server.serve_forever, name="connect-tunnel", daemon=True)

    @property
    def url(self) -> str:
        """Return the proxy URL for `HTTPS_PROXY`."""
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> Self:
        """Start serving in a thread."""
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        """Stop serving."""
        self._server.shutdown()
        self._server.server_close()
