"""Start what the benchmark measures: the servers' process, gunicorn, and an RSS sampler."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import requests

ROOT = Path(__file__).resolve().parents[2]


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
