"""Compare `sync` with `rclone copy --transfers 4` on the same bucket and library; print a table.

Run: ``python -m tests.benchmarks.bench_sync_vs_rclone [--files 300] [--folders 10] [--size 10240]``
(needs the `rclone` binary, Debian's package is enough; without it only `sync` is measured).
Not collected by pytest (its name is not ``test_*.py``).

The servers (moto S3, the test identity provider, the fake Graph) run in this process;
each tool runs as a child process, so both pay their own start-up and neither shares a
CPU-bound interpreter with the servers. rclone reaches the fake Graph as
graph.microsoft.com through a local CONNECT proxy (`HTTPS_PROXY`), trusting the test CA
with ``--ca-cert``; its OneDrive remote gets a ready token, so it never refreshes one.
Debian's rclone 1.60 sends its Authorization header to `uploadUrl`, which the fake Graph
refuses by default; the benchmark allows it for rclone's runs alone.

For each tool, on a fresh library: copy N small files in F folders and time it (files/s,
Graph requests per file), then run it again with nothing changed (Graph requests in all,
and per folder).
"""

from __future__ import annotations

import argparse
import datetime
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from sharepoint_proxy.app import Services
from sharepoint_proxy.config import Config
from sharepoint_proxy.sync import run_sync
from sharepoint_proxy.tokens import TokenProvider
from tests.benchmarks.rclone_tunnel import ConnectTunnel
from tests.support.graph import FakeGraph
from tests.support.idp import IdentityProvider
from tests.support.s3 import S3Server
from tests.support.tls import TestPKI

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SITE_PATH = "contoso.sharepoint.com:/sites/mirror"
BUCKET = "bench"
GRAPH_HOST = "graph.microsoft.com"


@dataclass
class Run:
    """One tool's numbers."""

    tool: str
    seconds: float
    files: int
    requests: int
    rerun_requests: int
    folders: int
    by_kind: dict[str, int]
    rerun_by_kind: dict[str, int]
    inner_seconds: float | None = None  # the copy alone, without process start-up (ours only)

    @property
    def files_per_second(self) -> float:
        """Return files copied per second of wall time."""
        return self.files / self.seconds

    @property
    def requests_per_file(self) -> float:
        """Return Graph requests per file copied."""
        return self.requests / self.files


class Bench:
    """The servers, the bucket and the environment both tools run in."""

    def __init__(self, directory: Path, *, files: int, folders: int, size: int) -> None:
        """Start the servers and fill the bucket with `files` objects of `size` bytes."""
        self.directory = directory
        self.pki = TestPKI(directory / "pki")
        os.environ["REQUESTS_CA_BUNDLE"] = str(self.pki.ca_path)
        os.environ["SSL_CERT_FILE"] = str(self.pki.ca_path)
        self.idp = IdentityProvider(self.pki).__enter__()
        credential = self.pki.client_credential("sharepoint-proxy")
        self.idp.register_client(CLIENT_ID, credential.cert_pem)
        self.graph = FakeGraph(self.pki, self.idp, tls_hostnames=(GRAPH_HOST,)).__enter__()
        self.s3 = S3Server().__enter__()
        self.files = files
        self.folders = folders
        client = self.s3.client()
        client.make_bucket(BUCKET)
        payload = os.urandom(size)
        for i in range(files):
            data = i.to_bytes(4, "big") + payload[4:]
            key = f"folder-{i % folders:02d}/file-{i:04d}.bin"
            client.put_object(BUCKET, key, io.BytesIO(data), len(data))
        self.env = {
            "TENANT_ID": "test-tenant",
            "CLIENT_ID": CLIENT_ID,
            "CERT_PATH": str(credential.cert_path),
            "KEY_PATH": str(credential.key_path),
            "SITE_PATH": SITE_PATH,
            "WEBHOOK_SECRET": "bench-webhook-secret-0123456789",
            "MINIO_ENDPOINT": self.s3.endpoint,
            "MINIO_ACCESS_KEY": self.s3.access_key,
            "MINIO_SECRET_KEY": self.s3.secret_key,
            "AUTHORITY": self.idp.authority,
            "GRAPH_BASE_URL": self.graph.base_url,
            "LOG_LEVEL": "WARNING",
        }

    def close(self) -> None:
        """Stop the servers."""
        self.s3.__exit__(None, None, None)
        self.graph.__exit__(None, None, None)
        self.idp.__exit__(None, None, None)

    def fresh_library(self) -> None:
        """Empty every library and zero the counters."""
        self.graph.reset()

    def check_library(self) -> None:
        """Fail unless the default library holds every object byte for byte."""
        client = self.s3.client()
        drive = self.graph.drive("Documents")
        for obj in client.list_objects(BUCKET, recursive=True):
            with client.get_object(BUCKET, obj.object_name) as response:
                expected = response.read()
            if drive.get(f"{BUCKET}/{obj.object_name}") != expected:
                raise SystemExit(f"benchmark: {BUCKET}/{obj.object_name} was not copied byte for byte")

    def measure(
        self, tool: str, command: list[str], env: dict[str, str], *, auth_on_upload_url: bool = False
    ) -> Run:
        """Run `command` twice on a fresh library: a full copy, then a re-run with nothing changed."""
        self.fresh_library()
        self.graph.allow_auth_on_upload_url = auth_on_upload_url
        started = time.perf_counter()
        output = _run(command, env)
        seconds = time.perf_counter() - started
        inner = json.loads(output)["seconds"] if output.startswith("{") else None
        self.check_library()
        by_kind = self._by_kind()
        self.graph.reset_counters()
        _run(command, env)
        rerun_by_kind = self._by_kind()
        folders = 1 + len({f for f in self.graph.drive("Documents").folders() if f.startswith(f"{BUCKET}/")})
        return Run(tool, seconds, self.files, sum(by_kind.values()), sum(rerun_by_kind.values()), folders,
                   by_kind, rerun_by_kind, inner)

    def _by_kind(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for request in self.graph.requests:
            counts[request.kind] = counts.get(request.kind, 0) + 1
        return counts

    # -- the tools -------------------------------------------------------------------------------

    def ours(self, transfers: int) -> Run:
        """Measure `run_sync` (in a child process, with a fresh state directory each copy)."""
        state = self.directory / "state"
        env = {**os.environ, **self.env, "STATE_DIR": str(state)}
        command = [sys.executable, "-m", "tests.benchmarks.bench_sync_vs_rclone", "--child-sync",
                   "--transfers", str(transfers)]
        shutil.rmtree(state, ignore_errors=True)
        return self.measure("sharepoint-proxy sync", command, env)

    def rclone(self, transfers: int) -> Run:
        """Measure `rclone copy s3:bench onedrive:bench` through the CONNECT tunnel."""
        config = self.directory / "rclone.conf"
        config.write_text(self._rclone_config())
        tunnel = ConnectTunnel({f"{GRAPH_HOST}:443": int(self.graph.origin.rpartition(":")[2])})
        command = [
            "rclone", "--config", str(config), "--ca-cert", str(self.pki.ca_path),
            "copy", f"s3:{BUCKET}", f"onedrive:{BUCKET}", "--transfers", str(transfers),
        ]
        with tunnel:
            env = {**os.environ, "HTTPS_PROXY": tunnel.url, "https_proxy": tunnel.url}
            # With AWS_CA_BUNDLE set, rclone 1.60's S3 backend fails at start
            # ("LoadCustomCABundleError ... unsupported transport, *fshttp.Transport").
            env.pop("AWS_CA_BUNDLE", None)
            return self.measure("rclone copy", command, env, auth_on_upload_url=True)

    def _rclone_config(self) -> str:
        self.idp.token_lifetime = 24 * 3600
        access_token = TokenProvider(Config.from_env({**self.env, "STATE_DIR": str(self.directory)})).token()
        expiry = datetime.datetime.now(datetime.UTC) + datetime.timedelta(hours=23)
        token = {
            "access_token": access_token,
            "token_type": "Bearer",
            "refresh_token": "not-used",
            "expiry": expiry.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
        return (
            "[s3]\ntype = s3\nprovider = Other\nenv_auth = false\n"
            f"access_key_id = {self.s3.access_key}\nsecret_access_key = {self.s3.secret_key}\n"
            f"endpoint = {self.s3.endpoint}\nregion = {self.s3.region}\n\n"
            "[onedrive]\ntype = onedrive\n"
            f"token = {json.dumps(token)}\n"
            f"drive_id = {self.graph.drive('Documents').id}\ndrive_type = business\n"
        )


def _run(command: list[str], env: dict[str, str]) -> str:
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600, check=False)
    if result.returncode != 0:
        raise SystemExit(f"benchmark: {command[0]} failed ({result.returncode}):\n{result.stderr[-4000:]}")
    return result.stdout


def child_sync(transfers: int) -> int:
    """Run `run_sync` on the bench bucket from the environment (the child process)."""
    services = Services.from_config(Config.from_env(os.environ))
    try:
        report = run_sync(services, [BUCKET], transfers=transfers, progress=False)
    finally:
        services.close()
    print(report.summary(), file=sys.stderr)
    print(json.dumps({"seconds": report.seconds}))
    return 0 if report.ok else 1


def table(runs: list[Run]) -> str:
    """Return the comparison as a Markdown table."""
    lines = [
        "| tool | files/s | Graph requests/file | re-run requests (per folder) |",
        "|---|---:|---:|---:|",
    ]
    lines.extend(
        f"| {r.tool} | {r.files_per_second:.1f} | {r.requests_per_file:.2f} | "
        f"{r.rerun_requests} ({r.rerun_requests / r.folders:.1f}) |"
        for r in runs
    )
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Measure both tools and print the table and the ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--folders", type=int, default=10)
    parser.add_argument("--size", type=int, default=10 * 1024)
    parser.add_argument("--transfers", type=int, default=4)
    parser.add_argument("--child-sync", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child_sync:
        return child_sync(args.transfers)
    with tempfile.TemporaryDirectory(prefix="bench-sync-") as tmp:
        bench = Bench(Path(tmp), files=args.files, folders=args.folders, size=args.size)
        try:
            runs = [bench.ours(args.transfers)]
            if shutil.which("rclone"):
                runs.append(bench.rclone(args.transfers))
            else:
                print("rclone not found: measuring sync alone", file=sys.stderr)
        finally:
            bench.close()
    print(f"{args.files} files of {args.size} B in {args.folders} folders, --transfers {args.transfers}, "
          f"{os.cpu_count()} CPUs\n")
    print(table(runs))
    for run in runs:
        if run.inner_seconds:
            print(f"\n{run.tool}: {run.files / run.inner_seconds:.1f} files/s without the interpreter's "
                  f"start-up ({run.seconds - run.inner_seconds:.1f} s of {run.seconds:.1f} s)")
        print(f"\n{run.tool}: first run {dict(sorted(run.by_kind.items()))}; "
              f"re-run {dict(sorted(run.rerun_by_kind.items()))}")
    if len(runs) == 2:
        ours, theirs = runs
        print(f"\nours/rclone: files/s x{ours.files_per_second / theirs.files_per_second:.2f}, "
              f"requests/file x{ours.requests_per_file / theirs.requests_per_file:.2f}, "
              f"re-run requests x{ours.rerun_requests / max(1, theirs.rerun_requests):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
