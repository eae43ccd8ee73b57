"""A key ending in '/' is a folder: it is created, and removed only when it is empty."""

from __future__ import annotations

import io
import threading
from typing import TYPE_CHECKING, Any

import pytest

from sharepoint_proxy.paths import to_sharepoint_path
from tests.conftest import WEBHOOK_SECRET
from tests.support.events import minio_body

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient
    from minio import Minio

    from tests.support.graph import FakeDrive, FakeGraph

AUTH = {"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"}
PUT = "s3:ObjectCreated:Put"
DELETE = "s3:ObjectRemoved:Delete"


def put_object(minio_client: Minio, bucket: str, key: str, data: bytes = b"") -> str:
    """Put `data` at `key` and return its ETag."""
    result = minio_client.put_object(bucket, key, io.BytesIO(data), len(data))
    return str(result.etag)


def notify(client: FlaskClient, event: str, bucket: str, key: str, **fields: Any) -> dict[str, Any]:
    """POST MinIO's notification for one record; return its one outcome from a 200 answer."""
    response = client.post("/s3event", data=minio_body(event, bucket, key, **fields), headers=AUTH)
    assert response.status_code == 200, response.get_data(as_text=True)
    [outcome] = response.json["outcomes"]
    return outcome  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    "marker",
    ["reports/", "reports/2025/", "a/b/c/d/", "CON/", "a:b /", " lead/x./", "📁 café/", "a//"],
)
def test_a_marker_creates_its_folder_and_no_file(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, marker: str
) -> None:
    """A key ending in '/' creates the folder (and its parents), under its mapped name, and no file."""
    put_object(minio_client, bucket, marker)
    outcome = notify(client, PUT, bucket, marker)
    folder = to_sharepoint_path(bucket, marker)
    assert outcome["outcome"] == "uploaded"
    assert outcome["path"] == folder
    assert folder in drive.folders()
    assert drive.files() == {}
    # A replay is harmless: the folder exists once.
    assert notify(client, PUT, bucket, marker)["outcome"] == "uploaded"
    assert folder in drive.folders()


def test_deleting_the_marker_of_an_empty_folder_removes_only_that_folder(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """A delete event for the marker of an empty folder removes that folder; its parent stays."""
    put_object(minio_client, bucket, "reports/2025/")
    notify(client, PUT, bucket, "reports/2025/")
    minio_client.remove_object(bucket, "reports/2025/")
    outcome = notify(client, DELETE, bucket, "reports/2025/")
    assert outcome["outcome"] == "deleted"
    assert f"{bucket}/reports/2025" not in drive.folders()
    assert f"{bucket}/reports" in drive.folders()


def test_deleting_the_marker_of_a_folder_with_files_keeps_folder_and_files(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """A delete event for a marker whose folder still holds files leaves both, with outcome absent."""
    put_object(minio_client, bucket, "reports/")
    notify(client, PUT, bucket, "reports/")
    put_object(minio_client, bucket, "reports/q1.pdf", b"q1")
    assert notify(client, PUT, bucket, "reports/q1.pdf")["outcome"] == "uploaded"

    minio_client.remove_object(bucket, "reports/")
    outcome = notify(client, DELETE, bucket, "reports/")
    assert outcome["outcome"] == "absent"
    assert f"{bucket}/reports" in drive.folders()
    assert drive.files() == {f"{bucket}/reports/q1.pdf": b"q1"}

    # Once the last file goes, the marker's delete (replayed) removes the folder.
    minio_client.remove_object(bucket, "reports/q1.pdf")
    assert notify(client, DELETE, bucket, "reports/q1.pdf")["outcome"] == "deleted"
    assert notify(client, DELETE, bucket, "reports/")["outcome"] == "deleted"
    assert f"{bucket}/reports" not in drive.folders()


def test_an_upload_into_a_folder_waits_while_its_marker_delete_runs(
    app: Flask, minio_client: Minio, bucket: str, drive: FakeDrive, graph: FakeGraph
) -> None:
    """Graph deletes a folder with all it holds. A file uploaded into the folder while its
    marker's delete runs (found empty, about to be deleted) waits for the folder's lock, then
    lands in a folder made anew, instead of landing first and being deleted with it."""
    put_object(minio_client, bucket, "race/")
    notify(app.test_client(), PUT, bucket, "race/")
    minio_client.remove_object(bucket, "race/")
    put_object(minio_client, bucket, "race/landed.txt", b"landed meanwhile")
    delete = graph.hold_next("delete", drop=False)
    outcomes: dict[str, dict[str, Any]] = {}

    def deliver(event: str, key: str) -> None:
        outcomes[key] = notify(app.test_client(), event, bucket, key)

    deleting = threading.Thread(target=deliver, args=(DELETE, "race/"))
    uploading = threading.Thread(target=deliver, args=(PUT, "race/landed.txt"))
    deleting.start()
    try:
        assert delete.reached.wait(timeout=60), "the marker's delete never reached Graph"
        uploading.start()
        uploading.join(timeout=1.0)
        assert graph.count("content") == 0, "the upload went ahead while its folder was being deleted"
    finally:
        delete.release()
        deleting.join()
        uploading.join()
    assert outcomes["race/"]["outcome"] == "deleted"
    assert outcomes["race/landed.txt"]["outcome"] == "uploaded"
    assert drive.files() == {f"{bucket}/race/landed.txt": b"landed meanwhile"}


def test_deleting_a_marker_keeps_a_folder_that_holds_only_folders(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """A folder that holds a subfolder is not empty: the marker's delete leaves the tree."""
    for marker in ("a/", "a/b/"):
        put_object(minio_client, bucket, marker)
        notify(client, PUT, bucket, marker)
    minio_client.remove_object(bucket, "a/")
    assert notify(client, DELETE, bucket, "a/")["outcome"] == "absent"
    assert {f"{bucket}/a", f"{bucket}/a/b"} <= drive.folders()


def test_a_stale_marker_delete_keeps_a_folder_whose_marker_is_back(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """A delete event for a marker that exists again in S3 converges on S3: the folder stays."""
    put_object(minio_client, bucket, "back/")
    notify(client, PUT, bucket, "back/")
    assert notify(client, DELETE, bucket, "back/")["outcome"] == "uploaded"
    assert f"{bucket}/back" in drive.folders()


def test_deleting_a_marker_whose_folder_never_existed_is_absent(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """A marker delete for a folder SharePoint never had is answered absent and changes nothing."""
    drive.put(f"{bucket}/other.txt", b"other")
    assert notify(client, DELETE, bucket, "never/")["outcome"] == "absent"
    assert drive.files() == {f"{bucket}/other.txt": b"other"}


def test_a_marker_delete_never_deletes_a_file_of_the_same_name(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """A delete event for marker 'a/' leaves the file that key 'a' mirrored at the same path."""
    put_object(minio_client, bucket, "a", b"file a")
    assert notify(client, PUT, bucket, "a")["outcome"] == "uploaded"
    outcome = notify(client, DELETE, bucket, "a/")
    assert outcome["outcome"] != "deleted", outcome
    assert drive.files() == {f"{bucket}/a": b"file a"}


def test_a_file_delete_never_deletes_a_folder_of_the_same_name(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """A delete (or stale upload) event for key 'a', absent from S3, leaves folder 'a' and the files in it."""
    put_object(minio_client, bucket, "a/b.txt", b"b")
    assert notify(client, PUT, bucket, "a/b.txt")["outcome"] == "uploaded"
    for event in (DELETE, PUT):
        outcome = notify(client, event, bucket, "a")
        assert outcome["outcome"] != "deleted", outcome
        assert drive.files() == {f"{bucket}/a/b.txt": b"b"}
        assert f"{bucket}/a" in drive.folders()


def test_a_marker_and_a_file_on_one_name_do_not_overwrite_each_other(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """Key 'a' owns its file: the marker 'a/' on the same path fails name_collision, never 'uploaded'."""
    put_object(minio_client, bucket, "a", b"file a")
    assert notify(client, PUT, bucket, "a")["outcome"] == "uploaded"
    put_object(minio_client, bucket, "a/")
    outcome = notify(client, PUT, bucket, "a/")
    assert (outcome["outcome"], outcome["reason"]) == ("failed", "name_collision")
    assert drive.files() == {f"{bucket}/a": b"file a"}


def test_a_file_on_a_markers_folder_fails_and_leaves_the_folder(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """Marker 'a/' holds the folder: file key 'a' on its path fails permanently (200), the folder stays."""
    put_object(minio_client, bucket, "a/")
    notify(client, PUT, bucket, "a/")
    put_object(minio_client, bucket, "a/inner.txt", b"inner")
    notify(client, PUT, bucket, "a/inner.txt")
    put_object(minio_client, bucket, "a", b"file a")
    outcome = notify(client, PUT, bucket, "a")
    assert outcome["outcome"] == "failed", outcome
    assert f"{bucket}/a" in drive.folders()
    assert drive.files() == {f"{bucket}/a/inner.txt": b"inner"}
