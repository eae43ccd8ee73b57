"""Keys SharePoint cannot hold as they are: each lands under its own name or fails permanently.

Every key goes through the real chain: put in moto's S3, notified through `/s3event`,
mapped by `sharepoint_proxy.paths`, written to the fake Graph that enforces SharePoint's
naming rules. Keys the S3 side cannot hold are pinned at the mapping level instead, and
each such place says why.
"""

from __future__ import annotations

import io
import unicodedata
from typing import TYPE_CHECKING, Any

import pytest

from sharepoint_proxy.paths import (
    ESCAPE,
    UnrepresentableKeyError,
    to_s3_key,
    to_sharepoint_path,
)
from tests.conftest import WEBHOOK_SECRET
from tests.support.events import minio_body
from tests.support.sharepoint_rules import path_violation

if TYPE_CHECKING:
    from flask.testing import FlaskClient
    from minio import Minio

    from tests.support.graph import FakeDrive

AUTH = {"Authorization": f"Bearer {WEBHOOK_SECRET}", "Content-Type": "application/json"}
PUT = "s3:ObjectCreated:Put"
DELETE = "s3:ObjectRemoved:Delete"

# Keys that land: each is put in S3, mirrored, and later deleted again.
LANDING_KEYS = [
    # forbidden characters " * : < > ? \ |
    'say "hi".txt',
    "*.log",
    "Q3: plan?.xlsx",
    "<draft>.md",
    "why?",
    "C:\\temp\\x.txt",
    "a|b",
    'all "*:<>?\\| in one',
    # leading and trailing spaces, in a file name and in a folder name
    " lead.txt",
    "trail.txt ",
    " both ",
    "dir /x.txt",
    " dir/y.txt",
    # trailing period
    "notes.",
    "dots.../z.txt",
    # control characters (moto holds all but newline; see test_keys_s3_cannot_hold_map_safely)
    "tab\there.txt",
    "cr\rx.txt",
    "bell\x07.txt",
    "nul\x00x.txt",
    "del\x7f.txt",
    "esc\x1b[0m.txt",
    "\x01start",
    # reserved names, bare, with extensions, in any case, and as folders
    "CON",
    "prn.txt",
    "Aux.tar.gz",
    "nul",
    "COM0",
    "com1.log",
    "COM9.txt",
    "LPT0",
    "lpt9.txt",
    "lpt1/inside.txt",
    ".lock",
    "desktop.ini",
    "sub/Desktop.INI",
    "~$draft.docx",
    "_vti_x",
    "a_VTI_b.txt",
    "dir/_vti_cnf/page.htm",
    # empty segments and a leading slash
    "a//b.txt",
    "/lead-slash.txt",
    "x///y.txt",
    # mixed Unicode and combining marks
    "📄 café #1.pdf",
    "e\u0301\u0323combining.txt",
    "zalgo h\u0338\u0335\u0334e.txt",
    "\u202eRTL override.txt",
    "\u200bzero width.txt",
    "\ufeffbom.txt",
    "Ω≈ç√∫µ≤≥÷ 日本語 🎉/x.txt",
    # look-alikes already present, next to the characters they stand for
    "a:b",
    "a：b",
    "it‛s",
    "‛",
    "␠lead",
    "x．",
    "x.",
    "␉tab",
    "＂quoted＂",
    "‛CON",
    "_‛vti_",
    # a name of exactly 255 characters is allowed
    "n" * 255,
]

# Keys that fail permanently, with the reason that names the limit.
FAILING_KEYS = {
    "s" * 256: "segment_too_long",
    "🎉" * 128: "segment_too_long",  # 128 code points, 256 UTF-16 code units
    ESCAPE * 128: "segment_too_long",  # each escape is written twice
    "dir/" + ":" * 256: "segment_too_long",
    "/".join(["d" * 100] * 4) + ".txt": "path_too_long",
    "/".join(["e" * 60] * 7): "path_too_long",
}


def put_object(minio_client: Minio, bucket: str, key: str, data: bytes) -> str:
    """Put `data` at `key` and return its ETag."""
    result = minio_client.put_object(bucket, key, io.BytesIO(data), len(data))
    return str(result.etag)


def notify(client: FlaskClient, event: str, bucket: str, key: str, **fields: Any) -> Any:
    """POST MinIO's notification for one record; return the response."""
    return client.post("/s3event", data=minio_body(event, bucket, key, **fields), headers=AUTH)


def only_outcome(response: Any) -> dict[str, Any]:
    """Return the one outcome of a 200 answer."""
    assert response.status_code == 200, response.get_data(as_text=True)
    [outcome] = response.json["outcomes"]
    return outcome  # type: ignore[no-any-return]


def stored_keys(minio_client: Minio, bucket: str) -> set[str]:
    """Return the keys moto holds in `bucket`, exactly as it lists them."""
    return {o.object_name for o in minio_client.list_objects(bucket, recursive=True) if o.object_name}


def content_for(key: str) -> bytes:
    """Return bytes unique to `key`, so a file found at a path tells whose it is."""
    return b"content of " + key.encode("utf-8", "surrogatepass")


def test_the_key_lists_hold_enough_distinct_hostile_keys() -> None:
    """At least 30 distinct hostile keys, each one mapped to a name other than itself or over a limit."""
    keys = [*LANDING_KEYS, *FAILING_KEYS]
    assert len(keys) >= 30
    assert len(set(keys)) == len(keys)
    plain = [k for k in LANDING_KEYS if to_sharepoint_path("b", k) == f"b/{k}"]
    # Legal as they are, kept on purpose: Unicode, combining marks and a name of exactly 255.
    assert all(not k.isascii() or len(k) == 255 for k in plain), plain


def test_hostile_keys_land_under_distinct_names_and_deletes_remove_exactly_their_file(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """Every hostile key lands under its own legal name, or fails with its limit; deletes remove only it."""
    try:
        check_every_hostile_key(client, minio_client, bucket, drive)
    finally:
        # The bucket fixture lists versions to empty the bucket, and moto's version listing
        # is not valid XML with control characters in keys: remove them by name.
        for key in [*LANDING_KEYS, *FAILING_KEYS]:
            minio_client.remove_object(bucket, key)


def check_every_hostile_key(client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive) -> None:
    """Put, mirror and delete every key of LANDING_KEYS and FAILING_KEYS in one bucket."""
    for key in [*LANDING_KEYS, *FAILING_KEYS]:
        put_object(minio_client, bucket, key, content_for(key))
    # moto holds each of these keys exactly as given (else the test would prove nothing).
    assert stored_keys(minio_client, bucket) == {*LANDING_KEYS, *FAILING_KEYS}

    expected: dict[str, bytes] = {}
    for key in LANDING_KEYS:
        outcome = only_outcome(notify(client, PUT, bucket, key))
        path = to_sharepoint_path(bucket, key)
        assert (outcome["outcome"], outcome["path"]) == ("uploaded", path), (key, outcome)
        assert path_violation(path) is None, (key, path)
        assert to_s3_key(path) == (bucket, key)
        assert path not in expected, f"{key!r} landed on a name another key holds"
        expected[path] = content_for(key)
        assert drive.get(path) == content_for(key), key
    for key, reason in FAILING_KEYS.items():
        outcome = only_outcome(notify(client, PUT, bucket, key))
        assert (outcome["outcome"], outcome["reason"]) == ("failed", reason), (key, outcome)

    # No two keys on one name: SharePoint compares names case-insensitively.
    assert len({path.casefold() for path in expected}) == len(expected)
    assert drive.files() == expected

    for key in [*LANDING_KEYS, *FAILING_KEYS]:
        minio_client.remove_object(bucket, key)
        outcome = only_outcome(notify(client, DELETE, bucket, key))
        if key in FAILING_KEYS:
            assert (outcome["outcome"], outcome["reason"]) == ("failed", FAILING_KEYS[key]), (key, outcome)
            continue
        assert outcome["outcome"] == "deleted", (key, outcome)
        del expected[to_sharepoint_path(bucket, key)]
        assert drive.files() == expected, f"deleting {key!r} touched another file"
    assert drive.files() == {}


@pytest.mark.parametrize("key", list(FAILING_KEYS), ids=[f"{r}-{len(k)}" for k, r in FAILING_KEYS.items()])
def test_a_key_over_a_limit_fails_permanently_without_touching_graph(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, key: str
) -> None:
    """A key over the 255 or 400 character limit is 200 with outcome failed and a reason naming the limit."""
    put_object(minio_client, bucket, key, b"too long")
    response = notify(client, PUT, bucket, key)
    outcome = only_outcome(response)
    assert outcome["outcome"] == "failed"
    assert outcome["reason"] == FAILING_KEYS[key]
    assert drive.files() == {}
    assert drive.folders() == set()


# Keys that cannot be put through moto with the minio client, pinned at the mapping level:
# '.'/'..' segments (the minio client refuses them, as MinIO does), keys that are only
# whitespace (the minio client's check_non_empty_string strips them to nothing) and newlines
# (moto answers them with an HTML 404).
KEYS_S3_CANNOT_HOLD = [
    "..",
    ".",
    "a/../b",
    "a/./b",
    "../up",
    "x/..",
    "x/.",
    " ",
    "   ",
    "\t",
    "\x0c",
    "\u2028",
    "nl\nx.txt",
    "\n",
    "a\r\n/b",
]


@pytest.mark.parametrize("key", KEYS_S3_CANNOT_HOLD)
def test_keys_s3_cannot_hold_map_to_legal_distinct_names(key: str) -> None:
    """Keys moto or the minio client refuse still map to a legal path that reads back to the key alone."""
    path = to_sharepoint_path("dossier", key)
    assert path_violation(path) is None, path
    assert to_s3_key(path) == ("dossier", key)  # reads back: no other key maps here


@pytest.mark.parametrize("key", ["a/../b", "..", "x/.", " ", "\t", "\x0c"])
def test_an_event_for_a_key_the_minio_client_refuses_is_not_left_pending(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, key: str
) -> None:
    """An event for a key the minio client refuses to stat ('..' segment, only whitespace) ends now: 200.

    The client raises ValueError before any request, every time, so retrying cannot help:
    the record must converge at once ("absent") or fail permanently with a reason, not
    stay in the journal as "pending" (202) to be retried for a day.
    """
    drive.put(f"{bucket}/keep.txt", b"keep")
    for event in (PUT, DELETE):
        response = notify(client, event, bucket, key)
        assert response.status_code == 200, response.get_data(as_text=True)
        [outcome] = response.json["outcomes"]
        assert outcome["outcome"] in {"absent", "failed"}, outcome
    assert drive.files() == {f"{bucket}/keep.txt": b"keep"}


@pytest.mark.parametrize(
    "pair",
    [
        ("Report.pdf", "report.pdf"),
        ("docs/Report.PDF", "DOCS/report.pdf"),
        (unicodedata.normalize("NFC", "é.txt"), unicodedata.normalize("NFD", "é.txt")),
        (unicodedata.normalize("NFD", "dir/é/x.txt"), unicodedata.normalize("NFC", "dir/É/x.txt")),
        ("CON.txt", "con.TXT"),
        ("a:b", "A:B"),
    ],
    ids=["case", "case-in-folder", "nfc-then-nfd", "nfd-then-nfc-and-case", "reserved-case", "stand-in-case"],
)
def test_a_second_key_on_an_owned_name_fails_and_never_touches_the_first(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive, pair: tuple[str, str]
) -> None:
    """Keys equal up to case or normal form: the second fails name_collision; its delete spares the first."""
    first, second = pair
    assert first != second
    path = to_sharepoint_path(bucket, first)
    put_object(minio_client, bucket, first, b"first")
    assert only_outcome(notify(client, PUT, bucket, first))["outcome"] == "uploaded"
    assert drive.get(path) == b"first"
    versions = drive.versions(path)

    put_object(minio_client, bucket, second, b"second")
    outcome = only_outcome(notify(client, PUT, bucket, second))
    assert (outcome["outcome"], outcome["reason"]) == ("failed", "name_collision")
    assert drive.get(path) == b"first"
    assert drive.versions(path) == versions
    # A replay of the second key's event changes nothing either.
    assert only_outcome(notify(client, PUT, bucket, second))["outcome"] == "failed"
    assert drive.versions(path) == versions

    minio_client.remove_object(bucket, second)
    outcome = only_outcome(notify(client, DELETE, bucket, second))
    assert outcome["outcome"] != "deleted", outcome
    assert drive.get(path) == b"first"
    assert drive.versions(path) == versions
    assert drive.files() == {path: b"first"}

    # The first key still owns its file, and its own delete removes it.
    minio_client.remove_object(bucket, first)
    assert only_outcome(notify(client, DELETE, bucket, first))["outcome"] == "deleted"
    assert drive.files() == {}


def test_a_delete_event_for_a_colliding_key_never_put_spares_the_owner(
    client: FlaskClient, minio_client: Minio, bucket: str, drive: FakeDrive
) -> None:
    """A delete event for `report.pdf`, never in S3, does not delete the file `Report.pdf` owns."""
    put_object(minio_client, bucket, "Report.pdf", b"owner")
    assert only_outcome(notify(client, PUT, bucket, "Report.pdf"))["outcome"] == "uploaded"
    path = to_sharepoint_path(bucket, "Report.pdf")
    versions = drive.versions(path)
    for event in (DELETE, PUT):
        outcome = only_outcome(notify(client, event, bucket, "report.pdf"))
        assert outcome["outcome"] == "absent", outcome
    assert drive.files() == {path: b"owner"}
    assert drive.versions(path) == versions


def test_look_alikes_and_the_characters_they_stand_for_never_share_a_name() -> None:
    """A key holding a stand-in or the escape maps apart from the key holding the original character."""
    pairs = [
        ("a:b", "a：b"),
        ("a b ", "a b␠"),
        (" a", "␠a"),
        ("x.", "x．"),
        ("t\tb", "t␉b"),
        ("CON", "‛CON"),
        ("_vti_", "_‛vti_"),
        ("a//b", "a/‛/b"),
        ("/a", "‛/a"),
        ("d\x7f", "d␡"),
    ]
    for original, look_alike in pairs:
        one, other = to_sharepoint_path("b", original), to_sharepoint_path("b", look_alike)
        assert one.casefold() != other.casefold(), (original, look_alike, one)
        assert path_violation(one) is None
        assert path_violation(other) is None


@pytest.mark.parametrize(
    ("key", "reason"),
    [
        ("s" * 256, "segment_too_long"),
        ("d/" * 199 + "x", "path_too_long"),
        ("bad\ud800.txt", "invalid_unicode"),
    ],
)
def test_the_mapping_names_the_limit_a_key_breaks(key: str, reason: str) -> None:
    """Over-long keys and lone surrogates (no S3 client can send one) are refused with a named reason."""
    with pytest.raises(UnrepresentableKeyError) as raised:
        to_sharepoint_path("dossier", key)
    assert raised.value.reason == reason
