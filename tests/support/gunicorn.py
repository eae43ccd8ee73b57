"""Run the real gunicorn command against the local servers, as production runs it."""

from __future__ import annotations

import contextlib
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
        """Start gunicorn; return once /healthz answers and every worker has built its app.

        A worker that is still building its app grows its RSS and calls the token endpoint
        and Graph (site, drive): tests that take a memory baseline or count calls right
        after `start` must not see that.
        """
        log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
                 "--bind", f"127.0.0.1:{self.port}", "sharepoint_proxy.wsgi:app"],
                cwd=ROOT, env=self._env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        try:
            self._wait_until_ready(log_start, deadline=time.monotonic() + 30)
        except BaseException:
            # Leave nothing running behind a failed start: the caller has no server to stop.
            if self.process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    self.kill()
            raise

    def _wait_until_ready(self, log_start: int, *, deadline: float) -> None:
        assert self.process is not None
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
        self._wait_until_apps_are_built(log_start, deadline)

    def _wait_until_apps_are_built(self, log_start: int, deadline: float) -> None:
        """Wait until the master's preflight and every worker have logged the library's resolution.

        The master logs one `drive.resolved` / `drive.unresolved` line before it forks, and
        each worker one when it has built its app. Only the log written since this start
        (from byte `log_start`) counts: an earlier start may have written to the same file.
        """
        if self._env.get("LOG_LEVEL", "INFO").strip().upper() not in ("DEBUG", "INFO"):
            return  # `drive.resolved` is logged at INFO: nothing to wait for
        assert self.process is not None
        expected = self._workers + 1
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {self.log_path.read_text()}")
            if self._resolution_lines(log_start) >= expected:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"gunicorn's {self._workers} workers did not finish building the app in time "
                    f"(expected {expected} drive.resolved/drive.unresolved lines, master's "
                    f"included, found {self._resolution_lines(log_start)}): "
                    f"{self.log_path.read_text()}"
                )
            time.sleep(0.1)

    def _resolution_lines(self, log_start: int) -> int:
        """Count the `drive.resolved` / `drive.unresolved` lines logged since byte `log_start`."""
        with self.log_path.open("rb") as log:
            log.seek(log_start)
            written = log.read()
        return sum(
            1 for line in written.splitlines() if b"drive.resolved" in line or b"drive.unresolved" in line
        )

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
