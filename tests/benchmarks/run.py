"""Measure the proxy's cost per event against the floor and print one table.

    python -m tests.benchmarks.run [--events 500] [--clients 8] [--large-mib 1024]

The test servers (moto S3, identity provider, fake Graph) run in a child process; gunicorn
runs the real `sharepoint_proxy.wsgi:app` against them; the floor (the same copies done
directly with minio and requests, see floor.py) and the webhook clients run here. Every
ratio compares numbers measured in this one run, on this machine.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from tests.benchmarks.floor import Floor
from tests.benchmarks.harness import Profiler, RssSampler, Servers
from tests.support.events import minio_body
from tests.support.gunicorn import Gunicorn

MiB = 1024 * 1024
BUCKET = "bench"
WEBHOOK_SECRET = "benchmark-webhook-secret-0123456789"
PUT = "s3:ObjectCreated:Put"
BLOCK = 25  # small events per alternation of floor and proxy
ROUNDS = 4  # alternations of floor and proxy in the concurrency test
LARGE_WAIT_SECONDS = 600.0  # for a large object answered 'pending' to reach the library


@dataclass
class Results:
    """Everything one run measured; `rows()` turns it into the table."""

    settings: dict[str, Any] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)

    def __setitem__(self, name: str, value: float) -> None:
        self.values[name] = value

    def __getitem__(self, name: str) -> float:
        return self.values[name]


def percentile(samples: list[float], fraction: float) -> float:
    """Return the `fraction` percentile of `samples` (nearest rank)."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(fraction * len(ordered)) - 1))]


class Bench:
    """One benchmark run: servers, gunicorn and the floor, set up once."""

    def __init__(self, args: argparse.Namespace, directory: Path) -> None:
        self.args = args
        self.chunk = args.chunk_mib * MiB
        self.results = Results()
        self.servers = Servers(directory)
        env = self.servers.env
        os.environ["REQUESTS_CA_BUNDLE"] = self.servers.ca_path
        os.environ["SSL_CERT_FILE"] = self.servers.ca_path
        self.floor = Floor(env, ca_path=self.servers.ca_path, chunk_bytes=self.chunk)
        self.minio = self.floor.minio
        self.minio.make_bucket(BUCKET)
        for folder in ("floor", f"floor/{BUCKET}", f"floor/{BUCKET}/small", f"floor/{BUCKET}/conc",
                       f"floor/{BUCKET}/large"):
            self.floor.make_folder(folder)
        self.gunicorn = Gunicorn(
            {
                **env,
                "WEBHOOK_SECRET": WEBHOOK_SECRET,
                "STATE_DIR": str(directory / "state"),
                "UPLOAD_CHUNK_BYTES": str(self.chunk),
            },
            Path(self.servers.ca_path),
            directory / "gunicorn.log",
            workers=args.workers,
        )
        self.gunicorn.start()
        self.headers = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}

    def close(self) -> None:
        """Stop gunicorn and the servers."""
        self.gunicorn.stop()
        self.servers.stop()

    # -- helpers ---------------------------------------------------------------------------

    def put_objects(self, prefix: str, count: int, size: int) -> list[str]:
        """Store `count` distinct objects of `size` bytes; return their keys."""
        keys = [f"{prefix}/obj-{i:05d}.bin" for i in range(count)]
        for key in keys:
            data = os.urandom(size)
            self.minio.put_object(BUCKET, key, io.BytesIO(data), size)
        return keys

    def post(self, session: requests.Session, key: str, body: bytes | None = None) -> dict[str, Any]:
        """Send one webhook for `key`; return the answer's JSON (raise on a non-2xx)."""
        response = session.post(f"{self.gunicorn.url}/s3event", data=body or minio_body(PUT, BUCKET, key),
                                headers=self.headers, timeout=120)
        response.raise_for_status()
        return dict(response.json())

    def warm_up(self) -> None:
        """Give each worker its token, connections and folders; warm the floor's connections."""
        keys = self.put_objects("small", 1, 16) + self.put_objects("conc", 1, 16)
        for _ in range(4 * self.args.workers):
            for key in keys:
                with requests.Session() as fresh:  # new connections reach every worker
                    self.post(fresh, key)
        for key in keys:
            self.floor.copy_small(BUCKET, key, f"floor/{BUCKET}/{key}")

    # -- 1. small objects in sequence ------------------------------------------------------

    def small_sequential(self) -> None:
        """Time `events` webhooks one after another, and the floor's copies of the same objects.

        Floor and proxy alternate in blocks, so a change of load on the machine during the run
        (other processes, the servers warming up) falls on both alike.
        """
        n = self.args.events
        keys = self.put_objects("small", n, self.args.size_kib * 1024)
        bodies = [minio_body(PUT, BUCKET, key) for key in keys]
        floor_times: list[float] = []
        proxy_times: list[float] = []
        floor_cpu = proxy_cpu = 0.0
        outcomes: dict[str, int] = {}
        calls = {"s3": 0, "graph": 0, "token": 0}
        session = requests.Session()
        profiler = Profiler(self.args.profile, "small", self.gunicorn.workers()).__enter__()
        for first in range(0, n, BLOCK):
            block = range(first, min(n, first + BLOCK))
            cpu_before = time.process_time()
            for i in block:
                started = time.perf_counter()
                self.floor.copy_small(BUCKET, keys[i], f"floor/{BUCKET}/{keys[i]}")
                floor_times.append(time.perf_counter() - started)
            floor_cpu += time.process_time() - cpu_before

            self.servers.reset()
            cpu_before = self.gunicorn.cpu_seconds()
            for i in block:
                started = time.perf_counter()
                answer = self.post(session, keys[i], bodies[i])
                proxy_times.append(time.perf_counter() - started)
                outcome = answer["outcomes"][0]["outcome"]
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
            proxy_cpu += self.gunicorn.cpu_seconds() - cpu_before
            counters = self.servers.counters()
            for name in calls:
                calls[name] += counters[name]
        profiler.__exit__(None, None, None)
        session.close()
        if outcomes != {"uploaded": n}:
            raise RuntimeError(f"unexpected outcomes: {outcomes}")

        r = self.results
        r["small_p50_ms"] = percentile(proxy_times, 0.50) * 1000
        r["small_p95_ms"] = percentile(proxy_times, 0.95) * 1000
        r["floor_p50_ms"] = percentile(floor_times, 0.50) * 1000
        r["floor_p95_ms"] = percentile(floor_times, 0.95) * 1000
        r["small_mean_ms"] = statistics.fmean(proxy_times) * 1000
        r["floor_mean_ms"] = statistics.fmean(floor_times) * 1000
        r["proxy_cpu_ms"] = proxy_cpu / n * 1000
        r["floor_cpu_ms"] = floor_cpu / n * 1000
        r["s3_calls"] = calls["s3"] / n
        r["graph_calls"] = calls["graph"] / n
        r["token_calls"] = calls["token"]

    # -- 2. concurrency --------------------------------------------------------------------

    def concurrent(self) -> None:
        """Events per second with `clients` senders, against `clients` threads copying directly.

        Alternates floor and proxy rounds, for the same reason as `small_sequential`.
        """
        clients = self.args.clients
        n = self.args.concurrent_events
        keys = self.put_objects("conc", n, self.args.size_kib * 1024)
        rounds = [keys[i::ROUNDS] for i in range(ROUNDS)]

        def floor_worker(share: list[str]) -> None:
            for key in share:
                self.floor.copy_small(BUCKET, key, f"floor/{BUCKET}/{key}")

        def proxy_worker(share: list[str]) -> None:
            with requests.Session() as session:
                for key in share:
                    self.post(session, key)

        floor_seconds = proxy_seconds = 0.0
        with Profiler(self.args.profile, "concurrent", self.gunicorn.workers()):
            for batch in rounds:
                shares = [batch[i::clients] for i in range(clients)]
                floor_seconds += _run_threads(floor_worker, shares)
                proxy_seconds += _run_threads(proxy_worker, shares)
        self.results["floor_eps"] = n / floor_seconds
        self.results["proxy_eps"] = n / proxy_seconds

    # -- 4. large object ---------------------------------------------------------------------

    def large(self) -> None:
        """Time one large object through the proxy and through the floor; watch worker RSS."""
        size = self.args.large_mib * MiB
        key = "large/object.bin"
        digest = _put_patterned(self.minio, key, size)

        started = time.perf_counter()
        self.floor.copy_large(BUCKET, key, f"floor/{BUCKET}/{key}")
        floor_seconds = time.perf_counter() - started

        workers = self.gunicorn.workers()
        with Profiler(self.args.profile, "large", workers), RssSampler(workers) as sampler, \
                requests.Session() as session:
            before = sampler.mark()
            started = time.perf_counter()
            answer = self.post(session, key)
            if answer["outcomes"][0]["outcome"] == "pending":  # past the response deadline
                deadline = time.monotonic() + LARGE_WAIT_SECONDS
                while (self.servers.file(f"{BUCKET}/{key}") or {}).get("size") != size:
                    if time.monotonic() > deadline:
                        raise RuntimeError(
                            f"the large object ({size} bytes) was answered 'pending' but did not "
                            f"reach the library within {LARGE_WAIT_SECONDS:.0f} s: see "
                            f"{self.gunicorn.log_path}"
                        )
                    time.sleep(0.02)
            proxy_seconds = time.perf_counter() - started
            time.sleep(0.05)
            growth = max(sampler.peak[pid] - before[pid] for pid in before)
        mirrored = self.servers.file(f"{BUCKET}/{key}")
        if not mirrored or mirrored["sha256"] != digest:
            raise RuntimeError("the large object arrived damaged")
        r = self.results
        r["large_mbps"] = size / proxy_seconds / 1e6
        r["floor_large_mbps"] = size / floor_seconds / 1e6
        r["rss_growth_mib"] = growth / MiB


def _run_threads(target: Callable[[list[str]], None], shares: list[list[str]]) -> float:
    """Run `target(share)` in one thread per share; return the wall time; re-raise a failure."""
    errors: list[BaseException] = []

    def guarded(share: list[str]) -> None:
        try:
            target(share)
        except BaseException as exc:  # reported after the join
            errors.append(exc)

    threads = [threading.Thread(target=guarded, args=(share,)) for share in shares]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    if errors:
        raise errors[0]
    return elapsed


class _Pattern(io.RawIOBase):
    """Produce `size` bytes of a random 1 MiB pattern, rotated per MiB (cheap, not compressible)."""

    def __init__(self, size: int) -> None:
        self._block = os.urandom(MiB)
        self._size = size
        self._offset = 0
        self.digest = hashlib.sha256()

    def readable(self) -> bool:
        return True

    def read(self, amt: int = -1) -> bytes:  # type: ignore[override]
        remaining = self._size - self._offset
        amt = remaining if amt is None or amt < 0 else min(amt, remaining)
        parts = []
        while amt > 0:
            index, within = divmod(self._offset, MiB)
            rotation = index % MiB
            piece = (self._block[rotation:] + self._block[:rotation])[within : within + amt]
            parts.append(piece)
            self._offset += len(piece)
            amt -= len(piece)
        data = b"".join(parts)
        self.digest.update(data)
        return data


def _put_patterned(client: Any, key: str, size: int) -> str:
    """Store `size` patterned bytes at `key`; return their SHA-256."""
    pattern = _Pattern(size)
    client.put_object(BUCKET, key, pattern, size, part_size=64 * MiB)
    return pattern.digest.hexdigest()


def machine() -> dict[str, str]:
    """Describe this machine: cores, CPU model, Python."""
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"nproc": str(os.cpu_count()), "cpu": model, "python": sys.version.split()[0]}


def table(results: Results, args: argparse.Namespace) -> str:
    """Render the results as one Markdown table."""
    v = results.values
    chunk_mib = args.chunk_mib
    added_p50 = v["small_p50_ms"] - v["floor_p50_ms"]
    added_p95 = v["small_p95_ms"] - v["floor_p95_ms"]
    eps_ratio = v["proxy_eps"] / v["floor_eps"]
    large_ratio = v["large_mbps"] / v["floor_large_mbps"]
    calls = (v["s3_calls"], v["graph_calls"], v["token_calls"])

    def verdict(ok: bool) -> str:
        return "yes" if ok else "**no**"

    rows = [
        ("metric", "proxy", "floor", "proxy − floor / ratio", "target", "met"),
        (f"1. small ({args.size_kib} KiB) latency p50, {args.events} in sequence",
         f"{v['small_p50_ms']:.2f} ms", f"{v['floor_p50_ms']:.2f} ms", f"+{added_p50:.2f} ms",
         "added < 3 ms", verdict(added_p50 < 3)),
        ("1. small latency p95", f"{v['small_p95_ms']:.2f} ms", f"{v['floor_p95_ms']:.2f} ms",
         f"+{added_p95:.2f} ms", "", ""),
        ("1. CPU per small event (gunicorn user+sys; floor: this process)",
         f"{v['proxy_cpu_ms']:.2f} ms", f"{v['floor_cpu_ms']:.2f} ms",
         f"×{v['proxy_cpu_ms'] / v['floor_cpu_ms']:.2f}", "< 3 ms", verdict(v["proxy_cpu_ms"] < 3)),
        (f"2. {args.clients} concurrent clients, {args.concurrent_events} events",
         f"{v['proxy_eps']:.0f} ev/s", f"{v['floor_eps']:.0f} ev/s", f"×{eps_ratio:.2f}", "≥ 0.7",
         verdict(eps_ratio >= 0.7)),
        ("3. calls per event: S3 / Graph / token (after warm-up)",
         f"{calls[0]:.2f} / {calls[1]:.2f} / {calls[2]:.0f}", "2 / 1 / 0", "", "2 / 1 / 0",
         verdict(round(calls[0], 2) == 2 and round(calls[1], 2) == 1 and calls[2] == 0)),
        (f"4. large object ({args.large_mib} MiB) throughput", f"{v['large_mbps']:.0f} MB/s",
         f"{v['floor_large_mbps']:.0f} MB/s", f"×{large_ratio:.2f}", "≥ 0.8", verdict(large_ratio >= 0.8)),
        (f"4. worker RSS growth during it (UPLOAD_CHUNK_BYTES = {chunk_mib} MiB)",
         f"{v['rss_growth_mib']:.1f} MiB", "", f"{v['rss_growth_mib'] / chunk_mib:.2f} × chunk",
         f"≤ {2 * chunk_mib} MiB", verdict(v["rss_growth_mib"] <= 2 * chunk_mib)),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["| " + " | ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)) + " |" for row in rows]
    lines.insert(1, "|" + "|".join("-" * (w + 2) for w in widths) + "|")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Read the command line."""
    parser = argparse.ArgumentParser(prog="python -m tests.benchmarks.run", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=500, help="small events in sequence (500)")
    parser.add_argument("--size-kib", type=int, default=10, help="size of a small object (10 KiB)")
    parser.add_argument("--clients", type=int, default=8, help="concurrent senders (8)")
    parser.add_argument("--concurrent-events", type=int, default=400, help="events sent concurrently (400)")
    parser.add_argument("--large-mib", type=int, default=1024, help="size of the large object (1024 MiB)")
    parser.add_argument("--chunk-mib", type=int, default=10, help="UPLOAD_CHUNK_BYTES in MiB (10)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (WEB_CONCURRENCY, 2)")
    parser.add_argument("--json", type=Path, help="also write the raw numbers to this file")
    parser.add_argument("--profile", type=Path, metavar="DIR",
                        help="record py-spy profiles of the workers per phase into DIR (numbers get worse)")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (logs, state)")
    args = parser.parse_args(argv)
    if (args.chunk_mib * MiB) % 327_680:
        parser.error("--chunk-mib must give a multiple of 327,680 bytes (5, 10, 15, ... MiB)")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run every measurement and print the table."""
    args = parse_args(argv)
    directory = Path(tempfile.mkdtemp(prefix="sharepoint-proxy-bench-"))
    bench = Bench(args, directory)
    try:
        steps: list[tuple[str, Callable[[], None]]] = [
            ("warm-up", bench.warm_up),
            ("1+3. small objects in sequence", bench.small_sequential),
            ("2. concurrency", bench.concurrent),
            ("4. large object", bench.large),
        ]
        for name, step in steps:
            print(f"… {name}", file=sys.stderr, flush=True)
            step()
    finally:
        bench.close()
        if args.keep:
            print(f"run directory: {directory}", file=sys.stderr)
        else:
            shutil.rmtree(directory, ignore_errors=True)
    print(table(bench.results, args))
    info = machine()
    print(f"\n{info['nproc']} CPUs ({info['cpu']}), Python {info['python']}; "
          f"gunicorn {args.workers} workers × 8 threads; servers in a separate process")
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                                         **bench.results.values, **bench.results.settings}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
