"""Start what the benchmark measures: the servers' process, gunicorn, and an RSS sampler."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    """Return a TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Servers:
    """The test servers, running in a child process (`python -m tests.benchmarks.servers`)."""

    def __init__(self, directory: Path) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.benchmarks.servers", str(directory)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if line.strip() != "ready":
            raise RuntimeError(f"the servers did not start: {line!r}")
        description = json.loads((directory / "servers.json").read_text())
        self.ca_path: str = description["ca_path"]
        self.env: dict[str, str] = description["env"]
        self._control: str = description["control_url"]
        self._session = requests.Session()

    def counters(self) -> dict[str, Any]:
        """Return the requests each server answered since the last reset."""
        return dict(self._session.get(f"{self._control}/counters", timeout=30).json())

    def reset(self) -> None:
        """Zero the servers' request counters."""
        self._session.post(f"{self._control}/reset", timeout=30).raise_for_status()

    def file(self, path: str) -> dict[str, Any] | None:
        """Return the size and SHA-256 of a file in the default library, or None."""
        answer = self._session.get(f"{self._control}/file", params={"path": path}, timeout=120).json()
        return dict(answer) if answer else None

    def stop(self) -> None:
        """Close the servers' stdin, which ends the process."""
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


class Gunicorn:
    """gunicorn serving `sharepoint_proxy.wsgi:app` with the repository's configuration."""

    def __init__(self, env: dict[str, str], ca_path: str, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        full_env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("GUNICORN", "PROMETHEUS"))},
            **env,
            "REQUESTS_CA_BUNDLE": ca_path,
            "SSL_CERT_FILE": ca_path,
        }
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
             "--bind", f"127.0.0.1:{self.port}", "sharepoint_proxy.wsgi:app"],
            cwd=ROOT, env=full_env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        self._master = psutil.Process(self.process.pid)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {log_path.read_text()}")
            try:
                if requests.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                time.sleep(0.2)
        else:
            raise RuntimeError(f"gunicorn did not start: {log_path.read_text()}")
        # Every worker answers once it has built its app.
        while len(self.workers()) < int(env.get("WEB_CONCURRENCY", "2")):
            time.sleep(0.1)

    def workers(self) -> list[psutil.Process]:
        """Return the worker processes."""
        return self._master.children()

    def cpu_seconds(self) -> float:
        """Return user + system CPU time of the master and its workers so far."""
        total = 0.0
        for process in [self._master, *self.workers()]:
            try:
                times = process.cpu_times()
            except psutil.NoSuchProcess:
                continue
            total += times.user + times.system
        return total

    def stop(self) -> None:
        """Stop gunicorn gracefully."""
        self.process.terminate()
        try:
            self.process.wait(timeout=90)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


class RssSampler:
    """Sample the RSS of processes every ~10 ms, keeping each one's latest and peak value."""

    def __init__(self, processes: list[psutil.Process], *, interval: float = 0.01) -> None:
        self._processes = processes
        self._interval = interval
        self._lock = threading.Lock()
        self.latest: dict[int, int] = {}
        self.peak: dict[int, int] = {}
        self._measuring = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss", daemon=True)

    def __enter__(self) -> RssSampler:
        """Start sampling."""
        self._thread.start()
        time.sleep(0.1)  # a few samples before the transfer: the level just before
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop sampling."""
        self._stop.set()
        self._thread.join()

    def mark(self) -> dict[int, int]:
        """Return the current level of each process, and measure peaks from here on."""
        with self._lock:
            self._measuring = True
            self.peak = dict(self.latest)
            return dict(self.latest)

    def _run(self) -> None:
        while not self._stop.is_set():
            for process in self._processes:
                try:
                    rss = process.memory_info().rss
                except psutil.NoSuchProcess:
                    continue
                with self._lock:
                    self.latest[process.pid] = rss
                    if self._measuring:
                        self.peak[process.pid] = max(self.peak.get(process.pid, 0), rss)
            time.sleep(self._interval)


class Profiler:
    """Record py-spy profiles (collapsed stacks) of processes while a `with` block runs.

    Only with `--profile DIR`: py-spy must be installed (`pip install py-spy`) and allowed
    to ptrace. One file per process: `DIR/<name>-<pid>.txt`, for `summarize_profile`.
    """

    def __init__(self, directory: Path | None, name: str, processes: list[psutil.Process]) -> None:
        self._directory = directory
        self._name = name
        self._pids = [p.pid for p in processes]
        self._spies: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Profiler:
        """Start one py-spy per process."""
        if self._directory is None:
            return self
        self._directory.mkdir(parents=True, exist_ok=True)
        spy = str(Path(sys.executable).with_name("py-spy"))
        for pid in self._pids:
            output = self._directory / f"{self._name}-{pid}.txt"
            self._spies.append(subprocess.Popen(
                [spy, "record", "--pid", str(pid), "--rate", "250", "--nonblocking", "--gil",
                 "--format", "raw", "--output", str(output)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        time.sleep(1.0)  # py-spy attaches
        return self

    def __exit__(self, *exc: object) -> None:
        """Stop py-spy; it writes its file on SIGINT."""
        for spy in self._spies:
            spy.send_signal(2)
        for spy in self._spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()
