"""The real gunicorn command serves the app end to end, with bounded memory per transfer."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.support.events import minio_body

if TYPE_CHECKING:
    from minio import Minio

    from tests.support.graph import FakeDrive
    from tests.support.tls import TestPKI

ROOT = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """gunicorn running `sharepoint_proxy.wsgi:app` with the repository's configuration."""

    def __init__(self, env: dict[str, str], pki: TestPKI, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN", "PROMETHEUS"))},
            **env,
            "REQUESTS_CA_BUNDLE": str(pki.ca_path),
            "SSL_CERT_FILE": str(pki.ca_path),
            "WEB_CONCURRENCY": "2",
        }
        self.log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.port}", "sharepoint_proxy.wsgi:app"],
            cwd=ROOT, env=full_env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {log_path.read_text()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return
            except requests.RequestException:
                time.sleep(0.2)
        raise RuntimeError(f"gunicorn did not start: {log_path.read_text()}")

    def workers(self) -> list[psutil.Process]:
        """Return the worker processes."""
        return psutil.Process(self.process.pid).children()

    def stop(self) -> None:
        """Stop gunicorn gracefully."""
        self.process.terminate()
        self.process.wait(timeout=60)
        self.log.close()


@pytest.fixture()
def gunicorn(env: dict[str, str], pki: TestPKI, tmp_path: Path) -> Iterator[Gunicorn]:
    """Run gunicorn against the local servers for one test."""
    server = Gunicorn(env, pki, tmp_path / "gunicorn.log")
    try:
        yield server
    finally:
        server.stop()


def test_gunicorn_mirrors_an_object_with_memory_bounded_by_the_chunk(
    gunicorn: Gunicorn, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """Under gunicorn a 50 MiB object arrives intact while worker RSS grows by about a chunk."""
    data = os.urandom(50 * MiB)
    minio_client.put_object(bucket, "film/take 1.mp4", io.BytesIO(data), len(data))
    small = b"hello from gunicorn"
    minio_client.put_object(bucket, "hello.txt", io.BytesIO(small), len(small))
    headers = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}
    warm = requests.post(f"{gunicorn.url}/s3event", data=minio_body("s3:ObjectCreated:Put", bucket, "hello.txt"),
                         headers=headers, timeout=60)
    assert warm.status_code == 200, warm.text
    assert drive.get(f"{bucket}/hello.txt") == small

    baseline = {p.pid: p.memory_info().rss for p in gunicorn.workers()}
    peak = dict(baseline)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for process in gunicorn.workers():
                try:
                    peak[process.pid] = max(peak.get(process.pid, 0), process.memory_info().rss)
                except psutil.NoSuchProcess:
                    pass
            time.sleep(0.01)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        response = requests.post(
            f"{gunicorn.url}/s3event",
            data=minio_body("s3:ObjectCreated:Put", bucket, "film/take 1.mp4"),
            headers=headers,
            timeout=120,
        )
    finally:
        done.set()
        sampler.join()
    assert response.status_code == 200, response.text
    assert drive.get(f"{bucket}/film/take 1.mp4") == data
    growth = max(peak[pid] - baseline.get(pid, peak[pid]) for pid in peak)
    print(f"\nworker RSS growth during a 50 MiB transfer: {growth / MiB:.1f} MiB (chunk 10 MiB)")
    # Holding the object would grow RSS by 50 MiB or more; streaming stays near one chunk.
    # (The benchmark measures this precisely; here allocator noise gets some room.)
    assert growth < 40 * MiB, f"worker RSS grew by {growth / MiB:.1f} MiB"


def test_gunicorn_refuses_to_start_on_bad_settings(env: dict[str, str], tmp_path: Path) -> None:
    """Missing settings stop the process at start with one message naming every variable."""
    bad = {k: v for k, v in env.items() if k not in ("TENANT_ID", "WEBHOOK_SECRET")}
    bad["UPLOAD_CHUNK_BYTES"] = "12345"
    result = subprocess.run(
        [sys.executable, "-c", "import os, sharepoint_proxy.wsgi"],
        cwd=ROOT, env={"PATH": os.environ["PATH"], **bad}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    for name in ("TENANT_ID", "WEBHOOK_SECRET", "UPLOAD_CHUNK_BYTES"):
        assert name in result.stderr
    assert env["WEBHOOK_SECRET"] not in result.stderr
