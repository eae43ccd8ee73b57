"""Run the real gunicorn command against the local servers, as production runs it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Gunicorn:
    """gunicorn serving `sharepoint_proxy.wsgi:app` with the repository's gunicorn.conf.py."""

    def __init__(self, env: dict[str, str], ca_path: Path, log_path: Path, *, workers: int = 2) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN", "PROMETHEUS"))},
            **env,
            "REQUESTS_CA_BUNDLE": str(ca_path),
            "SSL_CERT_FILE": str(ca_path),
            "WEB_CONCURRENCY": str(workers),
        }
        self._workers = workers
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start gunicorn and wait until /healthz answers."""
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                 "--bind", f"127.0.0.1:{self.port}", "sharepoint_proxy.wsgi:app"],
                cwd=ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"gunicorn did not start: {self.log_path.read_text()}")
        # /healthz answered from one worker; wait until every worker has been forked.
        while len(self.workers()) < self._workers and time.monotonic() < deadline:
            time.sleep(0.1)

    def workers(self) -> list[psutil.Process]:
        """Return the worker processes."""
        assert self.process is not None
        return psutil.Process(self.process.pid).children()

    def cpu_seconds(self) -> float:
        """Return the user + system CPU time of the master and its workers so far."""
        assert self.process is not None
        total = 0.0
        for process in [psutil.Process(self.process.pid), *self.workers()]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def kill(self) -> None:
        """Kill the whole process group with SIGKILL, as a crash or an OOM kill would."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        """Stop gunicorn gracefully (SIGTERM), if it runs."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.kill()
