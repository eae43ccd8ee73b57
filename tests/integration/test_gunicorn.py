"""The real gunicorn command serves the app end to end, with bounded memory per transfer."""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import pytest
import requests

from tests.conftest import WEBHOOK_SECRET
from tests.support.events import minio_body
from tests.support.gunicorn import ROOT, Gunicorn, free_port

if TYPE_CHECKING:
    from minio import Minio

    from tests.support.graph import FakeDrive
    from tests.support.tls import TestPKI

MiB = 1024 * 1024


def test_gunicorn_mirrors_an_object_with_memory_bounded_by_the_chunk(
    gunicorn: Gunicorn, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """Under gunicorn a 50 MiB object arrives intact while worker RSS grows by about a chunk."""
    data = os.urandom(50 * MiB)
    minio_client.put_object(bucket, "film/take 1.mp4", io.BytesIO(data), len(data))
    small = b"hello from gunicorn"
    minio_client.put_object(bucket, "hello.txt", io.BytesIO(small), len(small))
    headers = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}
    warm_body = minio_body("s3:ObjectCreated:Put", bucket, "hello.txt")
    warm = requests.post(f"{gunicorn.url}/s3event", data=warm_body, headers=headers, timeout=60)
    assert warm.status_code == 200, warm.text
    assert drive.get(f"{bucket}/hello.txt") == small

    baseline = {p.pid: p.memory_info().rss for p in gunicorn.workers()}
    peak = dict(baseline)
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            for process in gunicorn.workers():
                with contextlib.suppress(psutil.NoSuchProcess):
                    peak[process.pid] = max(peak.get(process.pid, 0), process.memory_info().rss)
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


def run_gunicorn_until_it_stops(env: dict[str, str], ca_path: Path) -> subprocess.CompletedProcess[str]:
    """Run the production gunicorn command; it must stop by itself (the timeout fails the test)."""
    command = [sys.executable, "-m", "gunicorn", "--config", "gunicorn.conf.py",
               "--bind", f"127.0.0.1:{free_port()}", "sharepoint_proxy.wsgi:app"]
    return subprocess.run(
        command, cwd=ROOT,
        env={"PATH": os.environ["PATH"], "REQUESTS_CA_BUNDLE": str(ca_path), **env},
        capture_output=True, text=True, timeout=90, check=False,
    )


def test_gunicorn_refuses_to_start_on_bad_settings(env: dict[str, str], pki: TestPKI) -> None:
    """Missing settings stop gunicorn at start, before any worker, with one message naming
    every variable (not a worker that fails, is replaced and fails again)."""
    bad = {k: v for k, v in env.items() if k not in ("TENANT_ID", "WEBHOOK_SECRET")}
    bad["UPLOAD_CHUNK_BYTES"] = "12345"
    result = run_gunicorn_until_it_stops(bad, pki.ca_path)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("invalid configuration") == 1, result.stderr
    for name in ("TENANT_ID", "WEBHOOK_SECRET", "UPLOAD_CHUNK_BYTES"):
        assert name in result.stderr
    assert "Booting worker" not in result.stderr
    assert env["WEBHOOK_SECRET"] not in result.stderr


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("DOCUMENT_LIBRARY", "Nowhere", "DOCUMENT_LIBRARY: no library 'Nowhere' on the site; it has:"),
        ("SITE_PATH", "contoso.sharepoint.com:/sites/elsewhere", "SITE_PATH: Graph refused"),
    ],
    ids=["unknown-library", "unknown-site"],
)
def test_gunicorn_stops_before_forking_when_the_library_cannot_be_found(
    env: dict[str, str], pki: TestPKI, setting: str, value: str, message: str
) -> None:
    """A library or site Graph does not know stops gunicorn once, before any worker boots,
    with the fix named (not workers that fail, are replaced and fail again)."""
    result = run_gunicorn_until_it_stops({**env, setting: value}, pki.ca_path)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Booting worker" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("setting", "value", "status", "message"),
    [
        ("DOCUMENT_LIBRARY", "Nowhere", 4, "DOCUMENT_LIBRARY: no library 'Nowhere'"),
        ("STATE_DIR", "not-a-directory", 1, "STATE_DIR: cannot open the journal"),
    ],
    ids=["bad-setup-stops-gunicorn", "state-dir-failure-lets-gunicorn-retry"],
)
def test_a_worker_that_cannot_set_up_exits_with_the_status_gunicorn_needs(
    env: dict[str, str], pki: TestPKI, tmp_path: Path, setting: str, value: str, status: int, message: str
) -> None:
    """Should a worker still fail to build the app (the master checked moments before), a bad
    setup exits with gunicorn's "app failed to load" status (4), which stops gunicorn instead
    of a restart loop; a STATE_DIR failure, which may pass (a full disk), exits 1, so gunicorn
    replaces the worker."""
    if setting == "STATE_DIR":
        (tmp_path / value).write_text("")
        value = str(tmp_path / value)
    result = subprocess.run(
        [sys.executable, "-c", "import sharepoint_proxy.wsgi"],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "REQUESTS_CA_BUNDLE": str(pki.ca_path), **env, setting: value},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == status, result.stderr
    assert message in result.stderr


def test_metrics_add_up_across_gunicorn_workers(
    env: dict[str, str], pki: TestPKI, tmp_path: Path, minio_client: Minio, bucket: str
) -> None:
    """With PROMETHEUS_MULTIPROC_DIR (as in the image), /metrics counts the events of every
    worker, whichever worker answers the scrape."""
    metrics_dir = tmp_path / "metrics"
    server = Gunicorn({**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}, pki.ca_path, tmp_path / "g.log")
    server.start()
    try:
        headers = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}
        for i in range(12):
            minio_client.put_object(bucket, f"m/{i}.txt", io.BytesIO(b"metric"), 6)
            body = minio_body("s3:ObjectCreated:Put", bucket, f"m/{i}.txt")
            answer = requests.post(f"{server.url}/s3event", data=body, headers=headers, timeout=60)
            assert answer.status_code == 200
        line = 'sharepoint_proxy_events_total{event="s3:ObjectCreated:Put",outcome="uploaded"} 12.0'
        for _ in range(4):  # each scrape may land on either worker
            assert line in requests.get(f"{server.url}/metrics", timeout=10).text
    finally:
        server.stop()


def test_json_logs_are_one_object_a_line_and_name_each_applied_change(
    env: dict[str, str], pki: TestPKI, tmp_path: Path, minio_client: Minio, bucket: str
) -> None:
    """With LOG_FORMAT=json every line gunicorn and the app write is one JSON object, and an
    applied event logs one line naming its key, outcome and path (and no secret)."""
    log_path = tmp_path / "gunicorn.log"
    server = Gunicorn({**env, "LOG_FORMAT": "json"}, pki.ca_path, log_path)
    server.start()
    try:
        minio_client.put_object(bucket, "logged/report.pdf", io.BytesIO(b"pdf"), 3)
        body = minio_body("s3:ObjectCreated:Put", bucket, "logged/report.pdf")
        headers = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}
        answer = requests.post(f"{server.url}/s3event", data=body, headers=headers, timeout=60)
        assert answer.status_code == 200, answer.text
    finally:
        server.stop()
    text = log_path.read_text()
    lines = [json.loads(line) for line in text.splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    assert any("Booting worker" in event for event in events), events
    assert any("POST /s3event" in event for event in events), events  # the access log
    [done] = [line for line in lines if line["event"] == "work.done"]
    assert (done["bucket"], done["key"], done["outcome"]) == (bucket, "logged/report.pdf", "uploaded")
    assert done["path"] == f"{bucket}/logged/report.pdf"
    assert WEBHOOK_SECRET not in text


def test_an_unusable_state_dir_stops_the_process_with_one_clear_line(
    env: dict[str, str], pki: TestPKI, tmp_path: Path
) -> None:
    """STATE_DIR that cannot hold the journal (here: a file) stops gunicorn with a message
    naming STATE_DIR, not a traceback."""
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    result = run_gunicorn_until_it_stops({**env, "STATE_DIR": str(blocker)}, pki.ca_path)
    assert result.returncode == 2, result.stderr
    assert "STATE_DIR: cannot open the journal" in result.stderr
    assert "Booting worker" not in result.stderr
    assert "Traceback" not in result.stderr
