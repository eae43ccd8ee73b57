"""`run_sync` reconciles the library with a bucket: real minio client, moto S3, the fake Graph."""

from __future__ import annotations

import io
import os
import random
from typing import TYPE_CHECKING

import pytest

from sharepoint_proxy.events import Action, Record
from sharepoint_proxy.minio_source import ObjectInfo
from sharepoint_proxy.sync import SyncReport, run_sync

if TYPE_CHECKING:
    from minio import Minio

    from sharepoint_proxy.app import Services
    from tests.support.graph import FakeDrive, FakeGraph
    from tests.support.s3 import S3Server

FOLDERS = ["alpha", "beta/gamma", "delta", "ε psilon", "zeta"]
# A name `to_sharepoint_path` never produces (a full-width period inside it), as a person
# might type it in SharePoint: it decodes to a key, but that key maps elsewhere.
FOREIGN_NAME = "Q1．final.xlsx"


def put_object(minio_client: Minio, bucket: str, key: str, data: bytes) -> None:
    """Put `data` at `key`."""
    minio_client.put_object(bucket, key, io.BytesIO(data), len(data))


def fill(minio_client: Minio, bucket: str, keys: list[str], *, seed: int = 0) -> dict[str, bytes]:
    """Put small random objects at `keys`; return key -> bytes."""
    rng = random.Random(seed)
    objects = {key: rng.randbytes(rng.randrange(0, 3000)) for key in keys}
    for key, data in objects.items():
        put_object(minio_client, bucket, key, data)
    return objects


def keys(count: int, *, start: int = 0) -> list[str]:
    """Return `count` keys spread over `FOLDERS` (40 a folder for 200)."""
    return [f"{FOLDERS[i % len(FOLDERS)]}/file {i:03d}+#%.bin" for i in range(start, start + count)]


def succeeded(graph: FakeGraph, kind: str) -> int:
    """Count the requests of `kind` that Graph answered with a 2xx."""
    return sum(1 for r in graph.requests if r.kind == kind and 200 <= r.status < 300)


def mirrored(drive: FakeDrive, bucket: str) -> dict[str, bytes]:
    """Return the files below the bucket's folder as key -> bytes."""
    prefix = f"{bucket}/"
    files = drive.files().items()
    return {path.removeprefix(prefix): data for path, data in files if path.startswith(prefix)}


def sync(services: Services, bucket: str, **options: object) -> SyncReport:
    """Run the sync of one bucket quietly."""
    return run_sync(services, [bucket], progress=False, **options)  # type: ignore[arg-type]


def folder_count(drive: FakeDrive, bucket: str) -> int:
    """Return how many folders the bucket's tree has in SharePoint, its own included."""
    return sum(1 for f in drive.folders() if f == bucket or f.startswith(f"{bucket}/"))


@pytest.fixture
def objects(minio_client: Minio, bucket: str) -> dict[str, bytes]:
    """Fill the bucket with the first 100 of 200 objects (the half mirrored before)."""
    return fill(minio_client, bucket, keys(100))


def test_sync_makes_the_library_equal_to_the_bucket_with_only_the_needed_uploads(
    services: Services, bucket: str, *, objects: dict[str, bytes],
    minio_client: Minio, drive: FakeDrive, graph: FakeGraph, s3: S3Server,
) -> None:
    """Half mirrored, 100 new, 3 changed, 1 tampered in SharePoint, 5 stale: 104 PUTs and 5 deletes."""
    first = sync(services, bucket)
    assert first.ok
    assert first.uploaded == 100
    assert mirrored(drive, bucket) == objects

    objects |= fill(minio_client, bucket, keys(100, start=100), seed=1)
    changed = keys(3)
    objects |= {key: os.urandom(100) + objects[key] for key in changed}
    for key in changed:
        put_object(minio_client, bucket, key, objects[key])
    tampered = keys(1, start=50)[0]
    drive.put(f"{bucket}/{tampered}", b"edited by hand in SharePoint")
    stale = [f"{bucket}/alpha/gone {i}.txt" for i in range(4)] + [f"{bucket}/old/deeper/gone.txt"]
    for path in stale:
        drive.put(path, b"no longer in the bucket")
    graph.reset_counters()
    s3.reset_counters()

    report = sync(services, bucket, delete=True)

    assert report.ok, report.summary()
    assert mirrored(drive, bucket) == objects  # byte for byte, nothing more
    assert (report.uploaded, report.unchanged, report.deleted) == (104, 96, 5)
    assert sorted(report.stale) == sorted(stale)
    assert succeeded(graph, "content") == 104  # one PUT a small file, no upload session
    assert graph.count("create_session") == 0
    assert succeeded(graph, "delete") == 5
    assert s3.count("HEAD") == 5  # a stat confirms each deletion; uploads trust the listing
    assert s3.count("GET") == 104 + 1  # each object's bytes, and one listing page


def test_a_rerun_with_nothing_changed_costs_one_request_per_folder(
    services: Services, bucket: str, *, objects: dict[str, bytes], drive: FakeDrive, graph: FakeGraph,
    s3: S3Server,
) -> None:
    """The second run lists each folder once, reads no object and uploads nothing."""
    assert sync(services, bucket).uploaded == len(objects)
    graph.reset_counters()
    s3.reset_counters()

    report = sync(services, bucket, delete=True)

    assert report.ok
    assert (report.uploaded, report.unchanged, report.deleted) == (0, len(objects), 0)
    folders = folder_count(drive, bucket)
    assert folders == 1 + len(FOLDERS) + 1  # the bucket, each folder, and "beta" above "beta/gamma"
    assert graph.count() == graph.count("children") == folders == report.folders
    assert report.graph_requests == folders
    assert s3.count() == 1  # one listing page


def test_a_file_lost_in_sharepoint_is_uploaded_again_though_the_ledger_knows_its_etag(
    services: Services, bucket: str, *, objects: dict[str, bytes], drive: FakeDrive, graph: FakeGraph,
) -> None:
    """Unchanged needs both the ledger's ETag and a file of the same size in SharePoint."""
    sync(services, bucket)
    lost = next(iter(objects))
    drive.delete(f"{bucket}/{lost}".split("/"), permanent=True)
    graph.reset_counters()

    report = sync(services, bucket)

    assert (report.uploaded, report.unchanged) == (1, len(objects) - 1)
    assert drive.get(f"{bucket}/{lost}") == objects[lost]


def test_dry_run_prints_the_plan_and_changes_nothing(
    services: Services, bucket: str, *, minio_client: Minio, objects: dict[str, bytes], drive: FakeDrive,
    graph: FakeGraph,
) -> None:
    """A dry run reports what it would upload and delete, and sends no write to Graph."""
    sync(services, bucket)
    fill(minio_client, bucket, ["new/one.txt", "new/two.txt"], seed=7)
    drive.put(f"{bucket}/alpha/stale.txt", b"old")
    before = drive.files()
    graph.reset_counters()
    out = io.StringIO()

    report = sync(services, bucket, delete=True, dry_run=True, out=out)

    assert drive.files() == before
    assert {r.method for r in graph.requests} == {"GET"}
    assert (report.uploaded, report.deleted, report.dry_run) == (2, 1, True)
    printed = out.getvalue().splitlines()
    assert sum(line.startswith("upload ") for line in printed) == 2
    assert f"delete  {bucket}/alpha/stale.txt" in printed
    assert "would upload 2" in report.summary()
    assert sync(services, bucket, delete=True).uploaded == 2  # the ledger was not touched either


def test_the_delete_guard_refuses_a_mass_deletion_unless_forced(
    services: Services, minio_client: Minio, objects: dict[str, bytes], drive: FakeDrive, bucket: str,
) -> None:
    """Deleting more than the allowed share is refused (saying how many and --force), then forced."""
    sync(services, bucket)
    gone = list(objects)[:30]
    for key in gone:
        minio_client.remove_object(bucket, key)  # no webhook: SharePoint still has them

    refused = sync(services, bucket, delete=True)

    assert not refused.ok
    assert refused.deleted == 0
    assert len(refused.stale) == 30
    assert refused.refused is not None
    assert "30 of 100" in refused.refused
    assert "--force" in refused.refused
    assert "REFUSED" in refused.summary()
    assert len(mirrored(drive, bucket)) == 100

    allowed = sync(services, bucket, delete=True, max_delete_share=0.5)
    assert allowed.ok
    assert allowed.deleted == 30
    assert mirrored(drive, bucket) == {k: v for k, v in objects.items() if k not in gone}


def test_force_overrides_the_delete_guard(
    services: Services, minio_client: Minio, objects: dict[str, bytes], drive: FakeDrive, bucket: str,
) -> None:
    """With force, an emptied bucket empties its folder in SharePoint."""
    sync(services, bucket)
    for key in objects:
        minio_client.remove_object(bucket, key)

    report = sync(services, bucket, delete=True, force=True)

    assert report.ok
    assert report.deleted == len(objects)
    assert mirrored(drive, bucket) == {}


def test_without_delete_stale_files_are_reported_and_kept(
    services: Services, objects: dict[str, bytes], drive: FakeDrive, bucket: str,
) -> None:
    """Stale files are listed in the summary with a hint, and stay."""
    drive.put(f"{bucket}/alpha/stale.txt", b"old")

    report = sync(services, bucket)

    assert report.ok
    assert report.stale == [f"{bucket}/alpha/stale.txt"]
    assert report.deleted == 0
    assert "--delete" in report.summary()
    assert drive.get(f"{bucket}/alpha/stale.txt") == b"old"


def test_foreign_items_are_counted_and_left_alone(
    services: Services, objects: dict[str, bytes], drive: FakeDrive, bucket: str,
) -> None:
    """An item whose name the mapping never produces is never deleted, even when forced."""
    foreign = f"{bucket}/alpha/{FOREIGN_NAME}"
    drive.put(foreign, b"made by hand")

    report = sync(services, bucket, delete=True, force=True)

    assert report.ok
    assert report.foreign == [foreign]
    assert report.stale == []
    assert drive.get(foreign) == b"made by hand"
    assert "foreign 1" in report.summary()


def test_a_key_sharepoint_cannot_hold_fails_and_the_rest_is_mirrored(
    services: Services, minio_client: Minio, objects: dict[str, bytes], drive: FakeDrive, bucket: str,
) -> None:
    """A key whose path would be too long is a reported failure, not an abort."""
    too_long = "x/" + "y" * 200 + "/" + "z" * 200
    put_object(minio_client, bucket, too_long, b"data")

    report = sync(services, bucket)

    assert not report.ok
    assert report.failures == [(f"{bucket}/{too_long}", "path_too_long")]
    assert report.uploaded == len(objects)
    assert mirrored(drive, bucket) == objects


def test_an_object_changed_since_the_listing_is_read_again(
    services: Services, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """Sync trusts the listing instead of a stat, but the read names the listed ETag: when the
    object changed in between, the mirror stats it again and uploads what MinIO holds now."""
    old = minio_client.put_object(bucket, "moving.txt", io.BytesIO(b"old"), 3)
    listed = ObjectInfo(bucket, "moving.txt", etag=str(old.etag), size=3)
    minio_client.put_object(bucket, "moving.txt", io.BytesIO(b"newer"), 5)
    services.graph.resolve_drive()
    record = Record("s3:ObjectCreated:Put", Action.UPLOAD, bucket, "moving.txt")
    outcome = services.mirror.apply(record, listed=listed)
    assert (outcome.outcome, outcome.size) == ("uploaded", 5)
    assert drive.get(f"{bucket}/moving.txt") == b"newer"
