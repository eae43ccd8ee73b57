"""Run the test servers (moto S3, identity provider, fake Graph) in their own process.

`python -m tests.benchmarks.servers DIR` makes a test PKI under DIR, starts the servers,
writes `DIR/servers.json` (endpoints, credentials, a control URL) and serves until its
stdin closes. The benchmark measures clients in another process, so the servers' CPU is
not charged to them. The control URL answers `GET /counters`, `POST /reset` and
`GET /file?path=...` (size and SHA-256 of a file in the default library).
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.support import graph as graph_server
from tests.support import idp as idp_server
from tests.support.graph import FakeGraph
from tests.support.idp import IdentityProvider
from tests.support.s3 import S3Server
from tests.support.tls import TestPKI

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SITE_PATH = "contoso.sharepoint.com:/sites/mirror"


class _Control(BaseHTTPRequestHandler):
    """Expose the servers' counters to the benchmark process."""

    protocol_version = "HTTP/1.1"
    servers: tuple[S3Server, IdentityProvider, FakeGraph]

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""

    def do_GET(self) -> None:
        """Answer /counters and /file."""
        s3, idp, graph = self.servers
        parts = urlsplit(self.path)
        if parts.path == "/counters":
            with graph._lock:
                kinds: dict[str, int] = {}
                for request in graph.requests:
                    kinds[request.kind] = kinds.get(request.kind, 0) + 1
            self._send({
                "s3": s3.count(),
                "s3_by_method": {m: s3.count(m) for m in ("HEAD", "GET", "PUT", "POST", "DELETE")},
                "graph": graph.count(),
                "graph_by_kind": kinds,
                "token": idp.token_requests,
            })
        elif parts.path == "/file":
            path = parse_qs(parts.query)["path"][0]
            content = graph.drive("Documents").get(path)
            self._send(None if content is None else {
                "size": len(content), "sha256": hashlib.sha256(content).hexdigest()
            })
        else:
            self._send({"error": "not found"}, 404)

    def do_POST(self) -> None:
        """Answer /reset: zero every counter."""
        s3, idp, graph = self.servers
        s3.reset_counters()
        graph.reset_counters()
        with idp._lock:
            idp._token_requests = 0
        self._send({"reset": True})

    def _send(self, payload: object, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def main(directory: Path) -> None:
    """Start the servers, describe them in `servers.json`, and serve until stdin closes."""
    # The HTTPS servers write a response's headers and body in two sends; with Nagle's
    # algorithm on, the body then waits for the client's delayed ACK (~40 ms on Linux),
    # a stall that real Graph does not have and that would swamp every latency here.
    # (socketserver's own switch: StreamRequestHandler sets TCP_NODELAY in setup().)
    # moto's S3 server (werkzeug's development server) closes every connection after one
    # request, so S3 keep-alive cannot be measured here; MinIO keeps connections open.
    graph_server._Handler.disable_nagle_algorithm = True
    idp_server._Handler.disable_nagle_algorithm = True
    pki = TestPKI(directory / "pki")
    with IdentityProvider(pki) as idp, FakeGraph(pki, idp) as graph, S3Server() as s3:
        credential = pki.client_credential("sharepoint-proxy")
        idp.register_client(CLIENT_ID, credential.cert_pem)
        _Control.servers = (s3, idp, graph)
        control = ThreadingHTTPServer(("127.0.0.1", 0), _Control)
        control.daemon_threads = True
        threading.Thread(target=control.serve_forever, daemon=True).start()
        description = {
            "ca_path": str(pki.ca_path),
            "control_url": f"http://127.0.0.1:{control.server_address[1]}",
            "env": {
                "TENANT_ID": "test-tenant",
                "CLIENT_ID": CLIENT_ID,
                "CERT_PATH": str(credential.cert_path),
                "KEY_PATH": str(credential.key_path),
                "SITE_PATH": SITE_PATH,
                "MINIO_ENDPOINT": s3.endpoint,
                "MINIO_ACCESS_KEY": s3.access_key,
                "MINIO_SECRET_KEY": s3.secret_key,
                "AUTHORITY": idp.authority,
                "GRAPH_BASE_URL": graph.base_url,
            },
        }
        (directory / "servers.json").write_text(json.dumps(description))
        print("ready", flush=True)
        sys.stdin.read()  # the benchmark closes our stdin when it is done
        control.shutdown()


if __name__ == "__main__":
    main(Path(sys.argv[1]))
