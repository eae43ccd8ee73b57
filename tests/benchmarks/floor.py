"""The floor: the proxy's work done directly, in one process, with the same libraries.

A warm `minio.Minio` client and a warm `requests.Session`, a token fetched once with msal:
stat + GET from S3 and one PUT to Graph per small object; GET streamed into an upload
session with the same chunk size for a large one. No journal, ledger, locks or HTTP hop.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import quote

import minio
import msal
import requests


class Floor:
    """Copy objects from S3 to the Graph library the way a minimal script would."""

    def __init__(self, env: dict[str, str], *, ca_path: str, chunk_bytes: int) -> None:
        host = env["MINIO_ENDPOINT"].split("://", 1)[1]
        self.minio = minio.Minio(host, access_key=env["MINIO_ACCESS_KEY"], secret_key=env["MINIO_SECRET_KEY"],
                                 secure=False, region="us-east-1")
        self._ca_path = ca_path
        self._chunk = chunk_bytes
        self._base = env["GRAPH_BASE_URL"]
        scope = "/".join(self._base.split("/", 3)[:3]) + "/.default"
        cert = open(env["CERT_PATH"]).read()  # noqa: SIM115 - read once
        key = open(env["KEY_PATH"]).read()  # noqa: SIM115 - read once
        app = msal.ConfidentialClientApplication(
            env["CLIENT_ID"], authority=env["AUTHORITY"], instance_discovery=False,
            client_credential={"private_key": key, "public_certificate": cert}, verify=ca_path,
        )
        token = app.acquire_token_for_client(scopes=[scope])["access_token"]
        self._auth = {"Authorization": f"Bearer {token}"}
        self._local = threading.local()
        hostname, _, site = env["SITE_PATH"].partition(":")
        site_id = self.session.get(f"{self._base}/sites/{hostname}:{site}", headers=self._auth,
                                   timeout=30).json()["id"]
        self.drive_id = self.session.get(f"{self._base}/sites/{site_id}/drive", headers=self._auth,
                                         timeout=30).json()["id"]

    @property
    def session(self) -> requests.Session:
        """Return this thread's keep-alive session to Graph."""
        session: requests.Session | None = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.verify = self._ca_path
            self._local.session = session
        return session

    def make_folder(self, path: str) -> None:
        """Create the folder at `path` (one level; its parent must exist)."""
        parent, _, name = path.rpartition("/")
        root = f"{self._base}/drives/{self.drive_id}/root"
        url = f"{root}:/{quote(parent)}:/children" if parent else f"{root}/children"
        body: dict[str, Any] = {"name": name, "folder": {}, "@microsoft.graph.conflictBehavior": "replace"}
        self.session.post(url, json=body, headers=self._auth, timeout=30).raise_for_status()

    def copy_small(self, bucket: str, key: str, path: str) -> None:
        """Stat, GET and PUT one object in one request to Graph."""
        self.minio.stat_object(bucket, key)
        response = self.minio.get_object(bucket, key)
        try:
            data = response.read()
        finally:
            response.close()
            response.release_conn()
        url = f"{self._base}/drives/{self.drive_id}/root:/{quote(path)}:/content"
        self.session.put(url, data=data, headers=self._auth, timeout=60).raise_for_status()

    def copy_large(self, bucket: str, key: str, path: str) -> None:
        """Stat, then stream the object into an upload session, one chunk at a time."""
        size = int(self.minio.stat_object(bucket, key).size or 0)
        url = f"{self._base}/drives/{self.drive_id}/root:/{quote(path)}:/createUploadSession"
        body = {"item": {"@microsoft.graph.conflictBehavior": "replace"}}
        created = self.session.post(url, json=body, headers=self._auth, timeout=60)
        created.raise_for_status()
        upload_url = created.json()["uploadUrl"]
        response = self.minio.get_object(bucket, key)
        try:
            offset = 0
            while offset < size:
                chunk = response.read(min(self._chunk, size - offset), decode_content=False)
                end = offset + len(chunk)
                headers = {"Content-Range": f"bytes {offset}-{end - 1}/{size}"}
                self.session.put(upload_url, data=chunk, headers=headers, timeout=180).raise_for_status()
                offset = end
        finally:
            response.close()
            response.release_conn()
