"""Parsing MinIO notification bodies, with the fixtures built from MinIO's source."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sharepoint_proxy.errors import BadPayloadError
from sharepoint_proxy.events import Action, parse_notification

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "minio-events"

EXPECTED = {
    "put-unversioned.json": (Action.UPLOAD, "documents", "invoices/2025/inv-0001.pdf"),
    "put-key-with-spaces-plus-unicode.json": (
        Action.UPLOAD,
        "documents",
        "Berichte/Q1 2025/Überblick+Final (v2).docx",
    ),
    "complete-multipart-upload.json": (Action.UPLOAD, "documents", "media/site-walkthrough.mp4"),
    "copy.json": (Action.UPLOAD, "documents", "archive/inv-0001.pdf"),
    "delete-unversioned.json": (Action.DELETE, "documents", "invoices/2025/inv-0001.pdf"),
    "delete-marker-created.json": (
        Action.DELETE,
        "documents-versioned",
        "Berichte/Q1 2025/Überblick+Final (v2).docx",
    ),
    "delete-noop.json": (Action.SKIP, "documents", "does/not/exist.txt"),
    "ilm-expiry-delete.json": (Action.DELETE, "documents", "tmp/upload-cache.bin"),
    "put-tagging.json": (Action.SKIP, "documents", "invoices/2025/inv-0001.pdf"),
}


def test_every_fixture_is_covered() -> None:
    """Each fixture MinIO's source gives us has an expectation here."""
    assert sorted(p.name for p in FIXTURES.glob("*.json")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_parses_to_the_right_action_bucket_and_key(name: str) -> None:
    """Keys are unescaped with unquote_plus; the event name decides upload, delete or skip."""
    body = (FIXTURES / name).read_bytes()
    [record] = parse_notification(body)
    assert (record.action, record.bucket, record.key) == EXPECTED[name]
    raw = json.loads(body)["Records"][0]
    assert record.event_name == raw["eventName"]
    assert record.etag == raw["s3"]["object"].get("eTag")
    assert record.size == raw["s3"]["object"].get("size")


def test_record_key_matches_the_unescaped_top_level_key() -> None:
    """The decoded Record key agrees with MinIO's plain top-level Key (bucket/key)."""
    for name in EXPECTED:
        body = json.loads((FIXTURES / name).read_bytes())
        [record] = parse_notification(json.dumps(body).encode())
        assert f"{record.bucket}/{record.key}" == body["Key"]


def test_version_id_is_kept() -> None:
    """A versioned delete keeps its versionId."""
    [record] = parse_notification((FIXTURES / "delete-marker-created.json").read_bytes())
    assert record.version_id == "7ead3921-78e0-441a-a939-c772d69c34a2"


def test_all_records_are_parsed() -> None:
    """Several records in one body are all returned, in order."""
    one = json.loads((FIXTURES / "put-unversioned.json").read_bytes())
    two = json.loads((FIXTURES / "delete-unversioned.json").read_bytes())
    body = json.dumps({"Records": one["Records"] + two["Records"]}).encode()
    assert [r.action for r in parse_notification(body)] == [Action.UPLOAD, Action.DELETE]


@pytest.mark.parametrize(
    ("event_name", "action"),
    [
        ("s3:ObjectCreated:Post", Action.UPLOAD),
        ("s3:ObjectRemoved:DeleteAllVersions", Action.DELETE),
        ("s3:LifecycleDelMarkerExpiration:Delete", Action.DELETE),
        ("s3:ObjectCreated:DeleteTagging", Action.SKIP),
        ("s3:ObjectCreated:PutRetention", Action.SKIP),
        ("s3:ObjectCreated:PutLegalHold", Action.SKIP),
        ("s3:ObjectAccessed:Get", Action.SKIP),
        ("s3:Replication:OperationFailedReplication", Action.SKIP),
    ],
)
def test_event_table(event_name: str, action: Action) -> None:
    """Uploads, deletes and everything else (skipped) follow DESIGN.md's table."""
    body = json.loads((FIXTURES / "put-unversioned.json").read_bytes())
    body["Records"][0]["eventName"] = event_name
    [record] = parse_notification(json.dumps(body).encode())
    assert record.action is action


@pytest.mark.parametrize(
    "body",
    [
        b"not json",
        b"\xff\xfe",
        b"[]",
        b"{}",
        b'{"Records": {}}',
        b'{"Records": [1]}',
        b'{"Records": [{"eventName": "s3:ObjectCreated:Put"}]}',
        b'{"Records": [{"eventName": "s3:ObjectCreated:Put", "s3": {"bucket": {}, "object": {"key": "a"}}}]}',
        b'{"Records": [{"eventName": "s3:ObjectCreated:Put",'
        b' "s3": {"bucket": {"name": "b"}, "object": {}}}]}',
        b'{"Records": [{"eventName": "s3:ObjectCreated:Put",'
        b' "s3": {"bucket": {"name": "b"}, "object": {"key": 5}}}]}',
        b"[" * 100_000,  # deeper than Python's recursion limit
        b'{"Records": ' + b"[" * 100_000,
    ],
)
def test_bad_bodies_are_refused(body: bytes) -> None:
    """Anything that is not a MinIO notification raises BadPayloadError (a 400)."""
    with pytest.raises(BadPayloadError):
        parse_notification(body)
