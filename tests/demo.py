"""See the whole chain work on one machine, with no tenant and no Docker.

`scripts/demo.sh` runs this: it starts moto's S3 server (in MinIO's place), the test
identity provider and Graph (in Entra ID's and SharePoint's), runs the proxy under the real
gunicorn command, puts a file into a bucket, delivers the notification MinIO would send,
and shows where the file landed. Everything listens on 127.0.0.1 and stops at the end.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import requests

from sharepoint_proxy.paths import to_sharepoint_path
from tests.support.events import minio_body
from tests.support.graph import FakeGraph
from tests.support.gunicorn import ROOT, Gunicorn
from tests.support.idp import IdentityProvider
from tests.support.s3 import S3Server
from tests.support.tls import TestPKI

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "demo-webhook-secret"
BUCKET = "dossier"
KEY = "rapports/2025 Q1: bilan?.txt"


def step(text: str) -> None:
    """Print one step of the demo."""
    print(f"\n== {text}", flush=True)


def main() -> int:
    """Run the demo; return the exit status."""
    with tempfile.TemporaryDirectory(prefix="sharepoint-proxy-demo-") as scratch:
        work = Path(scratch)
        pki = TestPKI(work / "pki")
        with IdentityProvider(pki) as idp, FakeGraph(pki, idp) as graph, S3Server() as s3:
            credential = pki.client_credential("sharepoint-proxy")
            idp.register_client(CLIENT_ID, credential.cert_pem)
            env = {
                "TENANT_ID": "demo-tenant",
                "CLIENT_ID": CLIENT_ID,
                "CERT_PATH": str(credential.cert_path),
                "KEY_PATH": str(credential.key_path),
                "SITE_PATH": "contoso.sharepoint.com:/sites/mirror",
                "WEBHOOK_SECRET": SECRET,
                "MINIO_ENDPOINT": s3.endpoint,
                "MINIO_ACCESS_KEY": s3.access_key,
                "MINIO_SECRET_KEY": s3.secret_key,
                "AUTHORITY": idp.authority,
                "GRAPH_BASE_URL": graph.base_url,
                "STATE_DIR": str(work / "state"),
                "BUCKETS": BUCKET,
            }
            s3.client().make_bucket(BUCKET)
            step("python -m sharepoint_proxy check")
            checked = subprocess.run(
                [sys.executable, "-m", "sharepoint_proxy", "check"],
                cwd=ROOT, env={**os.environ, **env, "REQUESTS_CA_BUNDLE": str(pki.ca_path),
                               "SSL_CERT_FILE": str(pki.ca_path)},
                check=False,
            ).returncode == 0
            step("gunicorn --config gunicorn.conf.py sharepoint_proxy.wsgi:app")
            proxy = Gunicorn(env, pki.ca_path, work / "gunicorn.log")
            proxy.start()
            try:
                print(f"listening on {proxy.url}; /readyz says",
                      requests.get(f"{proxy.url}/readyz", timeout=30).json())
                step(f"put s3://{BUCKET}/{KEY} into the S3 server")
                client = s3.client()
                data = b"Bonjour SharePoint!\n"
                client.put_object(BUCKET, KEY, io.BytesIO(data), len(data))
                step("deliver the notification MinIO would POST (moto sends none itself)")
                answer = requests.post(
                    f"{proxy.url}/s3event",
                    data=minio_body("s3:ObjectCreated:Put", BUCKET, KEY),
                    headers={"Authorization": f"Bearer {SECRET}"},
                    timeout=60,
                )
                print(answer.status_code, json.dumps(answer.json(), indent=2, ensure_ascii=False))
                step("the library now holds")
                files = graph.drive("Documents").files()
                for path, content in files.items():
                    print(f"Documents/{path}  ({len(content)} bytes)")
                path = to_sharepoint_path(BUCKET, KEY)
                landed = files.get(path) == data
                print(f"\n'{KEY}' landed as 'Documents/{path}': ':' and '?' are not allowed in "
                      "SharePoint names, so they became their full-width look-alikes.")
            finally:
                proxy.stop()
    return 0 if landed and checked else 1


if __name__ == "__main__":
    raise SystemExit(main())
