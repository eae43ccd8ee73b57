"""A verified MinIO webhook becomes a file in SharePoint: the app against real local servers."""

from __future__ import annotations

import hashlib
import hmac
import io
import os
import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from sharepoint_proxy.app import Services, create_app
from sharepoint_proxy.config import Config
from sharepoint_proxy.journal import Journal
from tests.conftest import WEBHOOK_SECRET
from tests.support.events import minio_body

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient
    from minio import Minio

    from tests.support.graph import FakeDrive, FakeGraph
    from tests.support.idp import IdentityProvider
    from tests.support.s3 import S3Server

AUTH = {"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"}
KiB = 1024
MiB = 1024 * KiB


def put_object(minio_client: Minio, bucket: str, key: str, data: bytes) -> str:
    """Put `data` at `key` and return its ETag."""
    result = minio_client.put_object(bucket, key, io.BytesIO(data), len(data))
    return str(result.etag)


def succeeded(graph: FakeGraph, kind: str) -> int:
    """Count the requests of `kind` that Graph answered with a 2xx."""
    return sum(1 for r in graph.requests if r.kind == kind and 200 <= r.status < 300)


def notify(client: FlaskClient, event: str, bucket: str, key: str, **fields: Any) -> Any:
    """POST MinIO's notification for one record; return the response."""
    return client.post("/s3event", data=minio_body(event, bucket, key, **fields), headers=AUTH)


KEYS = [
    "plain.txt",
    "dossier/fichier.pdf",
    "Berichte/Q1 2025/Überblick+Final (v2).docx",
    "percent/100% sure #1.txt",
    "deep/a/b/c/d/e/f/nested file.bin",
    "日本語/ファイル 名.txt",
    "emoji/🎉 party.txt",
]


@pytest.mark.parametrize("size", [0, 10 * KiB, 4 * MiB + 1, 50 * MiB], ids=["0B", "10KiB", "4MiB+1", "50MiB"])
def test_objects_arrive_byte_identical_at_the_right_path(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph, size: int
) -> None:
    """Every size, simple PUT or upload session, lands byte for byte at <bucket>/<key>."""
    data = os.urandom(size)
    key = f"sizes/{size} bytes+#%.bin"
    etag = put_object(minio_client, bucket, key, data)
    response = notify(client, "s3:ObjectCreated:Put", bucket, key, size=size, etag=etag)
    assert response.status_code == 200, response.json
    [outcome] = response.json["outcomes"]
    assert outcome["outcome"] == "uploaded"
    assert outcome["path"] == f"{bucket}/{key}"
    stored = drive.get(f"{bucket}/{key}")
    assert stored is not None
    assert hashlib.sha256(stored).digest() == hashlib.sha256(data).digest()
    used_session = succeeded(graph, "create_session") == 1
    assert used_session == (size > 4 * MiB)
    if size == 50 * MiB:
        assert graph.count("upload_chunk") == 5  # 10 MiB chunks


@pytest.mark.parametrize("key", KEYS)
def test_hostile_but_legal_keys_land_and_delete(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, key: str
) -> None:
    """Spaces, '+', '%', '#', non-ASCII and nested folders arrive, then a delete removes them."""
    data = key.encode() * 3
    put_object(minio_client, bucket, key, data)
    assert notify(client, "s3:ObjectCreated:Put", bucket, key).status_code == 200
    assert drive.get(f"{bucket}/{key}") == data

    minio_client.remove_object(bucket, key)
    response = notify(client, "s3:ObjectRemoved:Delete", bucket, key)
    assert response.status_code == 200
    assert response.json["outcomes"][0]["outcome"] == "deleted"
    assert drive.get(f"{bucket}/{key}") is None


def test_delete_marker_removes_the_file(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """A delete on a versioned bucket (a delete marker) removes the SharePoint file."""
    from minio.commonconfig import ENABLED
    from minio.versioningconfig import VersioningConfig

    minio_client.set_bucket_versioning(bucket, VersioningConfig(ENABLED))
    put_object(minio_client, bucket, "v/report.pdf", b"v1")
    notify(client, "s3:ObjectCreated:Put", bucket, "v/report.pdf")
    assert drive.get(f"{bucket}/v/report.pdf") == b"v1"
    minio_client.remove_object(bucket, "v/report.pdf")
    response = notify(client, "s3:ObjectRemoved:DeleteMarkerCreated", bucket, "v/report.pdf", version_id="x")
    assert response.json["outcomes"][0]["outcome"] == "deleted"
    assert drive.get(f"{bucket}/v/report.pdf") is None


@pytest.mark.parametrize("event", ["s3:ObjectCreated:PutTagging", "s3:ObjectRemoved:NoOP"])
def test_tag_changes_and_noop_change_nothing(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph, event: str
) -> None:
    """Metadata-only and no-op events are answered 200 and cost no Graph or MinIO call."""
    put_object(minio_client, bucket, "t.txt", b"tagged")
    graph.reset_counters()
    response = notify(client, event, bucket, "t.txt")
    assert response.status_code == 200
    assert response.json["outcomes"][0]["outcome"] == "skipped"
    assert graph.count() == 0
    assert drive.get(f"{bucket}/t.txt") is None


def test_an_event_for_a_vanished_object_converges_on_minio(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """An upload event whose object is already gone deletes the stale SharePoint copy instead."""
    drive.put(f"{bucket}/gone.txt", b"stale")
    response = notify(client, "s3:ObjectCreated:Put", bucket, "gone.txt")
    assert response.json["outcomes"][0]["outcome"] == "deleted"
    assert drive.get(f"{bucket}/gone.txt") is None


def test_one_token_and_no_lookups_serve_many_events(
    client: FlaskClient, minio_client: Minio, bucket: str, idp: IdentityProvider, graph: FakeGraph
) -> None:
    """After start, events cost no token request (cached) and no site or drive lookup."""
    put_object(minio_client, bucket, "warm.txt", b"warm")
    notify(client, "s3:ObjectCreated:Put", bucket, "warm.txt")
    tokens_before = idp.token_requests
    graph.reset_counters()
    for i in range(20):
        put_object(minio_client, bucket, f"many/{i}.txt", b"x" * i)
        assert notify(client, "s3:ObjectCreated:Put", bucket, f"many/{i}.txt").status_code == 200
    assert idp.token_requests == tokens_before
    assert graph.count("site") + graph.count("drive") + graph.count("drives") == 0
    assert succeeded(graph, "content") == 20


def test_throttling_is_honoured(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph
) -> None:
    """429 and 503 with Retry-After are waited out, then the upload succeeds."""
    put_object(minio_client, bucket, "slow.txt", b"patience")
    graph.fail_next("content", 429, retry_after="1")
    graph.fail_next("content", 503, retry_after="1")
    started = time.monotonic()
    response = notify(client, "s3:ObjectCreated:Put", bucket, "slow.txt")
    assert response.status_code == 200
    assert time.monotonic() - started >= 2.0  # both waits were honoured
    assert drive.get(f"{bucket}/slow.txt") == b"patience"
    statuses = [r.status for r in graph.requests if r.kind == "content"]
    assert statuses.index(429) < statuses.index(503) < len(statuses) - 1
    assert statuses[-1] in (200, 201)


def test_a_retry_after_holds_back_every_graph_request_of_the_process(
    app: Flask, services: Services, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph,
) -> None:
    """Graph throttles per app: after one request meets 429 with Retry-After, other requests
    of the process wait it out too, instead of adding to the throttling."""
    put_object(minio_client, bucket, "first.txt", b"first")
    put_object(minio_client, bucket, "second.txt", b"second")
    graph.fail_next("content", 429, retry_after="3")
    first = threading.Thread(
        target=notify, args=(app.test_client(), "s3:ObjectCreated:Put", bucket, "first.txt")
    )
    first.start()
    try:
        assert wait_for(lambda: services.graph.throttle.remaining() > 0, seconds=30)
        response = notify(app.test_client(), "s3:ObjectCreated:Put", bucket, "second.txt")
    finally:
        first.join()
    assert response.status_code == 200, response.json
    assert drive.get(f"{bucket}/first.txt") == b"first"
    assert drive.get(f"{bucket}/second.txt") == b"second"
    content = [r for r in graph.requests if r.kind == "content"]
    throttled = next(r for r in content if r.status == 429)
    assert all(r.at >= throttled.at + 3.0 for r in content if r is not throttled), [
        (r.path, r.status, round(r.at - throttled.at, 3)) for r in content
    ]


def test_a_long_retry_after_neither_aborts_uploads_under_way_nor_unreadies_the_proxy(
    app: Flask, services: Services, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph,
) -> None:
    """A Retry-After longer than the in-request budget holds back new Graph calls (the event
    is journaled, 202), but an upload session already under way sends its chunks to its
    upload URL and finishes, and /readyz stays 200: Graph answers, it asks us to slow down."""
    big = os.urandom(25 * MiB)
    put_object(minio_client, bucket, "under-way.bin", big)
    put_object(minio_client, bucket, "later.txt", b"later")
    second_chunk = graph.hold_next("upload_chunk", skip=1, drop=False)
    answers: dict[str, Any] = {}

    def upload_big() -> None:
        answers["big"] = notify(app.test_client(), "s3:ObjectCreated:Put", bucket, "under-way.bin")

    uploading = threading.Thread(target=upload_big)
    uploading.start()
    try:
        assert second_chunk.reached.wait(timeout=60), "the upload never reached its second chunk"
        graph.fail_next("content", 429, retry_after="120")
        throttled = notify(app.test_client(), "s3:ObjectCreated:Put", bucket, "later.txt")
        assert throttled.status_code == 202, throttled.json
        assert services.graph.throttle.remaining() > 60
        ready = app.test_client().get("/readyz")
    finally:
        second_chunk.release()
        uploading.join()
    assert ready.status_code == 200, ready.json
    assert answers["big"].status_code == 200, answers["big"].json
    assert drive.get(f"{bucket}/under-way.bin") == big
    assert drive.get(f"{bucket}/later.txt") is None  # waits for the Retry-After, in the journal


def test_a_dropped_chunk_resumes_where_the_session_stands(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph
) -> None:
    """A connection dropped mid-chunk is resumed from nextExpectedRanges, not restarted."""
    data = os.urandom(25 * MiB)
    put_object(minio_client, bucket, "big.bin", data)
    graph.drop_next("upload_chunk")
    response = notify(client, "s3:ObjectCreated:Put", bucket, "big.bin")
    assert response.status_code == 200, response.json
    assert drive.get(f"{bucket}/big.bin") == data
    assert succeeded(graph, "create_session") == 1
    assert graph.count("session_status") >= 1


def test_a_lost_session_starts_over_from_minio(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph
) -> None:
    """When Graph forgets the upload session (404), the object is read again into a new one."""
    data = os.urandom(15 * MiB)
    put_object(minio_client, bucket, "lost.bin", data)
    graph.fail_next("upload_chunk", 404)
    response = notify(client, "s3:ObjectCreated:Put", bucket, "lost.bin")
    assert response.status_code == 200, response.json
    assert drive.get(f"{bucket}/lost.bin") == data
    assert succeeded(graph, "create_session") == 2


def test_a_refused_cancel_does_not_hide_a_transient_upload_failure(
    client: FlaskClient, services: Services, minio_client: Minio, bucket: str, drive: FakeDrive,
    graph: FakeGraph,
) -> None:
    """An upload that runs out of retries cancels its session; if Graph refuses the cancel
    (403), the upload's own failure (transient: 202, retried later) still decides, so the
    record is not turned into a dead letter."""
    data = os.urandom(6 * MiB)
    put_object(minio_client, bucket, "busy.bin", data)
    graph.fail_next("upload_chunk", 503, times=6, retry_after="0")
    graph.fail_next("session_cancel", 403)
    response = notify(client, "s3:ObjectCreated:Put", bucket, "busy.bin")
    assert response.status_code == 202, response.json
    assert response.json["outcomes"][0]["outcome"] == "pending"
    assert graph.count("session_cancel") == 1
    assert services.journal.items("dead") == []


def test_missing_parent_folders_are_created(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph
) -> None:
    """Graph's 404 for a missing parent leads to creating the folders, then the upload."""
    put_object(minio_client, bucket, "x/y/z/file.txt", b"deep")
    notify(client, "s3:ObjectCreated:Put", bucket, "x/y/z/file.txt")
    assert drive.get(f"{bucket}/x/y/z/file.txt") == b"deep"
    assert {f"{bucket}", f"{bucket}/x", f"{bucket}/x/y", f"{bucket}/x/y/z"} <= drive.folders()


def wait_for(condition: Any, *, seconds: float = 60.0) -> bool:
    """Poll `condition` until it is true or `seconds` pass; return its last value."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return bool(condition())
        time.sleep(0.1)
    return True


def test_a_transient_failure_is_journaled_and_applied_later(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph
) -> None:
    """A failure that outlasts the in-request retries answers 202, then completes in the background."""
    put_object(minio_client, bucket, "later.txt", b"later")
    graph.fail_next("content", 503, times=6)
    response = notify(client, "s3:ObjectCreated:Put", bucket, "later.txt")
    assert response.status_code == 202
    assert response.json["outcomes"][0]["outcome"] == "pending"
    assert wait_for(lambda: drive.get(f"{bucket}/later.txt") == b"later")


def test_a_path_sharepoint_cannot_hold_fails_permanently(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """A key whose path exceeds 400 characters is answered 200 with outcome failed, never 5xx."""
    key = "/".join(["d" * 100] * 4) + ".txt"
    put_object(minio_client, bucket, key, b"long")
    response = notify(client, "s3:ObjectCreated:Put", bucket, key)
    assert response.status_code == 200
    [outcome] = response.json["outcomes"]
    assert outcome["outcome"] == "failed"
    assert outcome["reason"] == "path_too_long"
    assert drive.files() == {}


def test_webhook_status_codes(client: FlaskClient, drive: FakeDrive, bucket: str) -> None:
    """401 without credentials, 403 wrong, 413 oversized, 200 empty ping, 400 not MinIO's."""
    body = minio_body("s3:ObjectCreated:Put", bucket, "never.txt")
    assert client.post("/s3event", data=body).status_code == 401
    assert client.post("/s3event", data=body, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert client.post("/s3event", data=b"x" * (MiB + 1), headers=AUTH).status_code == 413
    assert client.post("/s3event", data=b"", headers=AUTH).status_code == 200
    assert client.post("/s3event", data=b"{not json", headers=AUTH).status_code == 400
    assert client.post("/s3event", data=b'{"Records": [{}]}', headers=AUTH).status_code == 400
    signature = hmac.new(WEBHOOK_SECRET.encode(), b"", hashlib.sha256).hexdigest()
    assert client.post("/s3event", data=b"", headers={"X-Minio-Signature": signature}).status_code == 200
    assert drive.files() == {}


def test_health_readiness_and_metrics(
    client: FlaskClient, minio_client: Minio, bucket: str, graph: FakeGraph, services: Services
) -> None:
    """/healthz is 200, /readyz 200 while Graph answers, /metrics counts events."""
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200, client.get("/readyz").json
    put_object(minio_client, bucket, "m.txt", b"m")
    notify(client, "s3:ObjectCreated:Put", bucket, "m.txt")
    text = client.get("/metrics").get_data(as_text=True)
    assert 'sharepoint_proxy_events_total{event="s3:ObjectCreated:Put",outcome="uploaded"}' in text
    assert "sharepoint_proxy_transfer_seconds_count" in text
    assert "sharepoint_proxy_transfer_seconds_count 0.0" not in text


def test_readiness_turns_503_when_graph_stops(client: FlaskClient, graph: FakeGraph) -> None:
    """/readyz answers 503 naming Graph while it is unreachable, and 200 once it is back."""
    graph.down()
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert any(p.startswith("graph") for p in response.json["problems"])
    finally:
        graph.up()


@pytest.mark.parametrize(
    ("code", "status", "ready"),
    [("AccessDenied", 403, True), ("InvalidAccessKeyId", 403, False)],
    ids=["may-not-list-buckets", "wrong-access-key"],
)
def test_readiness_tells_a_least_privilege_minio_user_from_wrong_credentials(
    client: FlaskClient, graph: FakeGraph, s3: S3Server, code: str, status: int, ready: bool
) -> None:
    """A MinIO user that may not list buckets is still ready (MinIO answers, as `check` says);
    a wrong access key is not, and /readyz names MinIO's error code."""
    s3.refuse("GET", "/", code, status=status)
    try:
        response = client.get("/readyz")
    finally:
        s3.allow()
    assert response.status_code == (200 if ready else 503), response.json
    if not ready:
        assert response.json["problems"] == [f"minio: {code}"]


def test_deletes_go_to_the_recycle_bin_by_default(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """DELETE_MODE=recycle (the default) leaves deleted files restorable in the recycle bin."""
    put_object(minio_client, bucket, "bin.txt", b"restorable")
    notify(client, "s3:ObjectCreated:Put", bucket, "bin.txt")
    minio_client.remove_object(bucket, "bin.txt")
    notify(client, "s3:ObjectRemoved:Delete", bucket, "bin.txt")
    assert f"{bucket}/bin.txt" in drive.recycled()


def test_permanent_delete_mode_skips_the_recycle_bin(
    env: dict[str, str], minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """DELETE_MODE=permanent deletes for good: nothing lands in the recycle bin."""
    config = Config.from_env({**env, "DELETE_MODE": "permanent"})
    services = Services.from_config(config)
    try:
        client = create_app(config, services=services).test_client()
        put_object(minio_client, bucket, "gone.txt", b"for good")
        notify(client, "s3:ObjectCreated:Put", bucket, "gone.txt")
        minio_client.remove_object(bucket, "gone.txt")
        answer = notify(client, "s3:ObjectRemoved:Delete", bucket, "gone.txt")
        assert answer.json["outcomes"][0]["outcome"] == "deleted"
    finally:
        services.close()
    assert drive.get(f"{bucket}/gone.txt") is None
    assert f"{bucket}/gone.txt" not in drive.recycled()


def test_no_secret_token_or_upload_url_reaches_the_logs(
    client: FlaskClient, minio_client: Minio, bucket: str, graph: FakeGraph, idp: IdentityProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With logging at DEBUG and faults forcing retries, no log line holds the webhook secret,
    an access token or an upload URL."""
    import logging

    from sharepoint_proxy.logs import configure_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    configure_logging("DEBUG", "json")
    json_handler = root.handlers[0]
    root.addHandler(caplog.handler)
    try:
        run_a_troubled_upload(client, minio_client, bucket, graph)
    finally:
        root.handlers[:], level = saved
        root.setLevel(level)
    text = "\n".join(json_handler.format(record) for record in caplog.records)
    assert caplog.records, "nothing was logged at all"
    assert WEBHOOK_SECRET not in text
    assert "/upload/" not in text
    for token in idp.issued:
        assert token not in text


def run_a_troubled_upload(client: FlaskClient, minio_client: Minio, bucket: str, graph: FakeGraph) -> None:
    """Upload 12 MiB through a dropped chunk, a throttled session and a failed status call."""
    data = os.urandom(12 * MiB)
    put_object(minio_client, bucket, "secret/plans.bin", data)
    graph.drop_next("upload_chunk")
    graph.fail_next("session_status", 503, retry_after="0")
    graph.fail_next("create_session", 429, retry_after="0")
    client.post("/s3event", data=b"{}", headers={"Authorization": "Bearer wrong-guess"})
    assert notify(client, "s3:ObjectCreated:Put", bucket, "secret/plans.bin").status_code == 200


def test_an_unwritable_journal_answers_503_and_changes_nothing(
    config: Config, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph
) -> None:
    """When the event cannot be journaled (here: the database stays locked), the answer is 503,
    so MinIO keeps the event, and nothing is done that the journal does not know of."""
    journal = Journal(config.state_dir / "journal.sqlite3", busy_timeout_seconds=0.2)
    services = Services.from_config(config, journal=journal)
    try:
        client = create_app(config, services=services).test_client()
        put_object(minio_client, bucket, "locked-out.txt", b"later")
        graph.reset_counters()
        blocker = sqlite3.connect(config.state_dir / "journal.sqlite3", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")
        try:
            response = notify(client, "s3:ObjectCreated:Put", bucket, "locked-out.txt")
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
    finally:
        services.close()
    assert response.status_code == 503
    assert response.json["error"] == "journal_unavailable"
    assert graph.count("content") == 0
    assert drive.files() == {}


@pytest.mark.parametrize(
    ("status", "reason"), [(403, "graph_access_denied"), (507, "quota_exceeded")], ids=["403", "507"]
)
def test_permanent_graph_refusals_become_dead_letters(
    client: FlaskClient, services: Services, minio_client: Minio, bucket: str, graph: FakeGraph,
    status: int, reason: str,
) -> None:
    """403 from Graph and 507 (quota) are permanent: 200 with outcome failed, kept as a dead letter."""
    put_object(minio_client, bucket, "refused.txt", b"no")
    graph.fail_next("content", status)
    response = notify(client, "s3:ObjectCreated:Put", bucket, "refused.txt")
    assert response.status_code == 200
    [outcome] = response.json["outcomes"]
    assert (outcome["outcome"], outcome["reason"]) == ("failed", reason)
    [dead] = services.journal.items("dead")
    assert dead.record.key == "refused.txt"
    assert dead.last_error == reason


def test_a_locked_file_is_retried_until_it_is_unlocked(
    env: dict[str, str], minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """423 (the file is open or checked out) is transient: 202, then applied once unlocked."""
    config = Config.from_env({**env, "RESPONSE_DEADLINE_SECONDS": "2"})
    services = Services.from_config(config, retry_budget_seconds=1.0)
    try:
        client = create_app(config, services=services).test_client()
        put_object(minio_client, bucket, "open.docx", b"v1")
        notify(client, "s3:ObjectCreated:Put", bucket, "open.docx")
        # On a slow machine v1 may still be in flight (answered 202): let it land first.
        assert wait_for(
            lambda: drive.get(f"{bucket}/open.docx") == b"v1" and services.journal.depth() == 0
        ), "v1 was not applied before the lock"
        put_object(minio_client, bucket, "open.docx", b"v2")
        drive.lock(f"{bucket}/open.docx")
        response = notify(client, "s3:ObjectCreated:Put", bucket, "open.docx")
        assert response.status_code == 202
        assert drive.get(f"{bucket}/open.docx") == b"v1"
        drive.unlock(f"{bucket}/open.docx")
        assert wait_for(lambda: drive.get(f"{bucket}/open.docx") == b"v2")
    finally:
        services.close()


def test_a_worker_started_during_a_graph_outage_finds_its_library_later(
    config: Config, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph
) -> None:
    """A process that could not resolve the library at start (Graph away) resolves it on the
    first event after Graph returns, instead of postponing every event forever."""
    services = Services.from_config(config, retry_budget_seconds=1.0)
    graph.down()
    try:
        client = create_app(config, services=services).test_client()
    finally:
        graph.up()
    try:
        put_object(minio_client, bucket, "late.txt", b"late")
        response = notify(client, "s3:ObjectCreated:Put", bucket, "late.txt")
        assert response.status_code == 200, response.json
        assert drive.get(f"{bucket}/late.txt") == b"late"
    finally:
        services.close()
