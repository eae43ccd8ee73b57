"""Nothing lost, nothing stale: chaos, a crash mid-upload, and a Graph outage, under gunicorn."""

from __future__ import annotations

import hashlib
import io
import random
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import requests

from sharepoint_proxy.journal import Journal
from sharepoint_proxy.paths import to_sharepoint_path
from tests.conftest import WEBHOOK_SECRET
from tests.support.events import minio_body
from tests.support.gunicorn import Gunicorn

if TYPE_CHECKING:
    from minio import Minio

    from tests.support.graph import FakeDrive, FakeGraph
    from tests.support.idp import IdentityProvider
    from tests.support.tls import TestPKI

KiB = 1024
MiB = 1024 * KiB
HEADERS = {"Authorization": f"Bearer {WEBHOOK_SECRET}"}
PUT = "s3:ObjectCreated:Put"
DELETE = "s3:ObjectRemoved:Delete"


def wait_until(
    condition: Callable[[], bool], *, seconds: float, what: str, env: dict[str, str] | None = None
) -> None:
    """Poll `condition` until true; fail naming `what` after `seconds`, with the journal and logs."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {seconds:.0f} s waiting for {what}{diagnosis(env)}")
        time.sleep(0.2)


def diagnosis(env: dict[str, str] | None) -> str:
    """Describe the journal's unfinished work and the end of the proxy's logs, for a failure."""
    if env is None:
        return ""
    state = Path(env["STATE_DIR"])
    items = "\n".join(
        f"  {i.id} {i.state} attempts={i.attempts} due_in={i.due_at - time.time():.1f}s {i.record.key}: "
        f"{i.last_error}"
        for i in journal_of(env).items()
    )
    logs = ""
    for log in sorted(state.parent.glob("*.log")):
        logs += f"\n--- {log.name} (last 40 lines)\n" + "\n".join(log.read_text().splitlines()[-40:])
    return f"\njournal:\n{items or '  (empty)'}{logs}"


def journal_of(env: dict[str, str]) -> Journal:
    """Open the journal the proxy under test writes to."""
    return Journal(Path(env["STATE_DIR"]) / "journal.sqlite3")


def completed_uploads(graph: FakeGraph) -> int:
    """Count uploads Graph completed: simple PUTs and final chunks answered 200/201."""
    return sum(
        1
        for r in graph.requests
        if r.kind in ("content", "upload_chunk") and r.status in (200, 201)
    )


def post(url: str, body: bytes) -> int:
    """Deliver one webhook body as MinIO does; return the status (0 when no answer came)."""
    try:
        return requests.post(f"{url}/s3event", data=body, headers=HEADERS, timeout=90).status_code
    except requests.RequestException:
        return 0


@pytest.fixture
def chaos_env(env: dict[str, str]) -> dict[str, str]:
    """Small chunks and a short deadline, so faults land mid-upload and answers come fast."""
    return {
        **env,
        "SIMPLE_UPLOAD_MAX_BYTES": str(256 * KiB),
        "UPLOAD_CHUNK_BYTES": str(327_680),
        "RESPONSE_DEADLINE_SECONDS": "5",
    }


def test_chaos_ends_with_the_drive_equal_to_the_bucket(
    chaos_env: dict[str, str],
    pki: TestPKI,
    tmp_path: Path,
    minio_client: Minio,
    bucket: str,
    drive: FakeDrive,
    graph: FakeGraph,
    idp: IdentityProvider,
) -> None:
    """300+ puts, overwrites, deletes and re-puts on 40 keys, delivered shuffled, twice over,
    from 8 threads through 2 workers while Graph throttles, locks, drops and the token
    endpoint fails: afterwards the library equals the bucket, every event was answered 2xx,
    and uploads equal the distinct contents that had to be uploaded."""
    rng = random.Random(20261204)
    keys = [f"chaos/{i % 7}/key {i}+#%.bin" for i in range(40)]
    contents = [rng.randbytes(rng.choice([0, 700, 5 * KiB, 40 * KiB])) for _ in range(25)]
    contents += [rng.randbytes(rng.choice([600 * KiB, 1200 * KiB])) for _ in range(5)]  # sessions

    server = Gunicorn(chaos_env, pki.ca_path, tmp_path / "gunicorn.log")
    server.start()
    state: dict[str, bytes] = {}  # what the bucket holds
    mirrored: dict[str, str] = {}  # what SharePoint should hold, by ETag (MD5)
    expected_uploads = 0
    operations = 0
    statuses: list[int] = []
    try:
        for round_number in range(5):
            events: list[bytes] = []
            for _ in range(64):
                key = rng.choice(keys)
                if key in state and rng.random() < 0.3:
                    minio_client.remove_object(bucket, key)
                    del state[key]
                    events.append(minio_body(DELETE, bucket, key))
                else:
                    data = rng.choice(contents)
                    minio_client.put_object(bucket, key, io.BytesIO(data), len(data))
                    state[key] = data
                    events.append(minio_body(PUT, bucket, key))
                operations += 1
            # Duplicates and disorder: every event at least once, a third of them twice.
            deliveries = events + rng.sample(events, len(events) // 3)
            rng.shuffle(deliveries)
            # Faults for this round, consumed by whichever requests meet them first.
            graph.fail_next("content", 429, times=3, retry_after="1")
            graph.fail_next(None, 503, times=2, retry_after="1")
            graph.drop_next("upload_chunk", times=2)
            graph.drop_next("content", times=1)
            locked = to_sharepoint_path(bucket, keys[round_number])
            drive.lock(locked)
            if round_number == 2:
                idp.expire_tokens()
                idp.outage = True
            with ThreadPoolExecutor(8) as pool:
                statuses += list(pool.map(lambda body: post(server.url, body), deliveries))
            drive.unlock(locked)
            idp.outage = False
            wait_until(
                lambda: journal_of(chaos_env).depth() == 0,
                seconds=180, what="the journal to drain", env=chaos_env,
            )
            for key, data in state.items():
                etag = hashlib.md5(data).hexdigest()
                if mirrored.get(key) != etag:
                    expected_uploads += 1
                    mirrored[key] = etag
            for key in [k for k in mirrored if k not in state]:
                del mirrored[key]
    finally:
        server.stop()

    assert operations >= 300
    assert set(statuses) <= {200, 202}, sorted(set(statuses))
    seen = {r.status for r in graph.requests}
    assert {0, 423, 429, 503} <= seen, f"not every fault was met: {sorted(seen)}"
    print(f"\nchaos: {len(statuses)} deliveries ({statuses.count(202)} answered 202), "
          f"{len(graph.requests)} Graph requests, {expected_uploads} uploads")
    expected = {to_sharepoint_path(bucket, key): data for key, data in state.items()}
    assert drive.files() == expected
    assert journal_of(chaos_env).items("dead") == []
    assert completed_uploads(graph) == expected_uploads


def test_a_crash_mid_upload_completes_after_restart_without_redelivery(
    env: dict[str, str], pki: TestPKI, tmp_path: Path, minio_client: Minio, bucket: str,
    drive: FakeDrive, graph: FakeGraph,
) -> None:
    """SIGKILL of the whole gunicorn group during a 40 MiB upload: the restarted service
    finishes it from the journal, although MinIO never sends the event again."""
    data = random.Random(7).randbytes(40 * MiB)
    minio_client.put_object(bucket, "crash/film.mp4", io.BytesIO(data), len(data))
    server = Gunicorn(env, pki.ca_path, tmp_path / "gunicorn.log")
    # Park the third chunk, so the kill lands mid-upload with two chunks in the session.
    third_chunk = graph.hold_next("upload_chunk", skip=2)
    answer = threading.Thread(target=post, args=(server.url, minio_body(PUT, bucket, "crash/film.mp4")))
    try:
        server.start()
        answer.start()
        assert third_chunk.reached.wait(timeout=60), "the upload did not reach its third chunk"
        server.kill()
    finally:
        # On any failure above too: no gunicorn left running, no request left parked.
        if server.process is not None and server.process.poll() is None:
            server.kill()
        third_chunk.release()
        if answer.is_alive():
            answer.join()
    assert drive.get(f"{bucket}/crash/film.mp4") is None
    restarted = Gunicorn(env, pki.ca_path, tmp_path / "gunicorn-restarted.log")
    try:
        restarted.start()
        wait_until(lambda: drive.get(f"{bucket}/crash/film.mp4") == data, seconds=120,
                   what="the upload to finish after the restart", env=env)
        wait_until(lambda: journal_of(env).depth() == 0, seconds=60,
                   what="the journal to record the upload as done", env=env)
    finally:
        restarted.stop()
    assert journal_of(env).depth() == 0


def test_events_during_a_graph_outage_are_answered_2xx_and_applied_after(
    env: dict[str, str], pki: TestPKI, tmp_path: Path, minio_client: Minio, bucket: str,
    drive: FakeDrive, graph: FakeGraph,
) -> None:
    """Graph unreachable for 20 s: every event in that window gets a 2xx, and all are
    applied once Graph is back."""
    server = Gunicorn({**env, "RESPONSE_DEADLINE_SECONDS": "3"}, pki.ca_path, tmp_path / "gunicorn.log")
    server.start()
    try:
        warm = b"warm"
        minio_client.put_object(bucket, "warm.txt", io.BytesIO(warm), len(warm))
        # With a 3 s deadline a slow machine may answer 202 and finish in the background.
        assert post(server.url, minio_body(PUT, bucket, "warm.txt")) in (200, 202)
        wait_until(lambda: drive.get(f"{bucket}/warm.txt") == warm, seconds=60,
                   what="the warm-up file to arrive", env=env)
        graph.down()
        started = time.monotonic()
        statuses = []
        expected = {}
        index = 0
        with ThreadPoolExecutor(4) as pool:
            futures = []
            while time.monotonic() - started < 18:
                key = f"outage/{index}.txt"
                payload = f"written during the outage, #{index}".encode()
                minio_client.put_object(bucket, key, io.BytesIO(payload), len(payload))
                expected[f"{bucket}/{key}"] = payload
                futures.append(pool.submit(post, server.url, minio_body(PUT, bucket, key)))
                index += 1
                time.sleep(1.0)
            statuses = [f.result() for f in futures]
        time.sleep(max(0.0, 20 - (time.monotonic() - started)))
        graph.up()
        assert set(statuses) == {202}, statuses
        wait_until(lambda: all(drive.get(p) == d for p, d in expected.items()), seconds=120,
                   what="the events to be applied after the outage", env=env)
    finally:
        server.stop()
