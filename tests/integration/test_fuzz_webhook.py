"""Fuzz `POST /s3event`: only documented status codes, no 5xx from bad input, nothing done unauthenticated.

Hypothesis generates bodies (arbitrary bytes, arbitrary JSON, MinIO bodies from
`tests.support.events.minio_body` mutated) and header sets (missing, wrong and valid
credentials), and sends them through the Flask test client of the app the fixture chain
builds. Valid notifications name a bucket that does not exist, so they never upload.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from tests.conftest import WEBHOOK_SECRET
from tests.support.events import minio_body

if TYPE_CHECKING:
    from flask.testing import FlaskClient

    from sharepoint_proxy.app import Services
    from tests.support.graph import FakeDrive, FakeGraph

DOCUMENTED = frozenset({200, 202, 400, 401, 403, 413})
MAX_BODY_BYTES = 1024 * 1024
NO_SUCH_BUCKET = "fuzz-no-such-bucket"
SECRET = WEBHOOK_SECRET.encode()
UPLOAD_EVENTS = [
    "s3:ObjectCreated:Put",
    "s3:ObjectCreated:Post",
    "s3:ObjectCreated:Copy",
    "s3:ObjectCreated:CompleteMultipartUpload",
]
DELETE_EVENTS = [
    "s3:ObjectRemoved:Delete",
    "s3:ObjectRemoved:DeleteMarkerCreated",
    "s3:ObjectRemoved:DeleteAllVersions",
    "s3:LifecycleDelMarkerExpiration:Delete",
]
SKIP_EVENTS = ["s3:ObjectCreated:PutTagging", "s3:ObjectCreated:PutRetention", "s3:ObjectRemoved:NoOP"]

FUZZ = settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)


def sign(body: bytes, key: bytes = SECRET) -> str:
    """Return the hex HMAC-SHA256 of `body` under `key`."""
    return hmac.new(key, body, hashlib.sha256).hexdigest()


# -- headers -----------------------------------------------------------------------------------
#
# Header strategies draw a body-independent recipe; `bad_headers_for` and `good_headers_for`
# turn it into headers for the body at hand (building strategies per body is slow).

header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=80)
scheme_text = st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=12).filter(
    lambda s: s.lower() != "bearer"
)
content_types = st.sampled_from(["application/json", "text/plain", "application/octet-stream", ""])
signature_spelling = st.sampled_from(["plain", "prefixed", "uppercase", "padded"])


def spell(digest: str, spelling: str) -> str:
    """Write a hex digest the ways a sender may: plain, with `sha256=`, in capitals, padded."""
    return {
        "plain": digest,
        "prefixed": "sha256=" + digest,
        "uppercase": digest.upper(),
        "padded": f" {digest} ",
    }[spelling]


bad_recipes = st.one_of(
    st.tuples(st.just("missing"), st.sampled_from(["none", "empty-auth", "empty-sig", "both-empty"])),
    st.tuples(st.just("wrong-bearer"), header_text),
    st.tuples(st.just("wrong-scheme"), scheme_text),
    st.tuples(st.just("bare-secret"), st.sampled_from(["", " ", "Bearer", "Bearer:"])),
    st.tuples(st.just("junk-authorization"), header_text.filter(lambda t: bool(t.strip()))),
    st.tuples(st.just("hmac-of-other-bytes"), st.tuples(st.binary(max_size=64), signature_spelling)),
    st.tuples(st.just("hmac-other-key"), st.tuples(st.binary(min_size=1, max_size=64), signature_spelling)),
    st.tuples(st.just("junk-signature"), header_text.filter(lambda t: bool(t.strip()))),
    st.tuples(st.just("wrong-both"), st.tuples(header_text, st.binary(max_size=16))),
)
good_recipes = st.sampled_from(
    [
        "bearer",
        "lowercase-scheme",
        "padded-bearer",
        "hmac",
        "hmac-prefixed",
        "hmac-uppercase",
        "hmac-with-wrong-bearer",
        "bearer-with-wrong-hmac",
    ]
)
MISSING = {
    "none": {},
    "empty-auth": {"Authorization": ""},
    "empty-sig": {"X-Minio-Signature": ""},
    "both-empty": {"Authorization": "", "X-Minio-Signature": ""},
}


def _not_the_secret(token: str) -> str:
    return token if token.strip() != WEBHOOK_SECRET else token + "x"


def _other_than(data: bytes, other: bytes) -> bytes:
    return other if other != data else other + b"x"


def bad_headers_for(recipe: tuple[str, Any], body: bytes) -> tuple[int, dict[str, str]]:
    """Return (expected status, headers) with missing (401) or wrong (403) credentials for `body`."""
    kind, value = recipe
    if kind == "missing":
        return 401, MISSING[value]
    make = {
        "wrong-bearer": lambda: {"Authorization": f"Bearer {_not_the_secret(value)}"},
        "wrong-scheme": lambda: {"Authorization": f"{value} {WEBHOOK_SECRET}".strip()},
        "bare-secret": lambda: {"Authorization": f"{value}{WEBHOOK_SECRET}"},
        "junk-authorization": lambda: {"Authorization": _not_the_secret(value)},
        "hmac-of-other-bytes": lambda: {
            "X-Minio-Signature": spell(sign(_other_than(body, value[0])), value[1])
        },
        "hmac-other-key": lambda: {
            "X-Minio-Signature": spell(sign(body, _other_than(SECRET, value[0])), value[1])
        },
        "junk-signature": lambda: {"X-Minio-Signature": value if sign(body) not in value.lower() else "x"},
        "wrong-both": lambda: {
            "Authorization": f"Bearer {_not_the_secret(value[0])}",
            "X-Minio-Signature": sign(_other_than(body, value[1])),
        },
    }
    return 403, make[kind]()


def good_headers_for(recipe: str, body: bytes) -> dict[str, str]:
    """Return headers that authenticate `body`: the bearer token or its HMAC, in an allowed spelling."""
    digest = sign(body)
    return {
        "bearer": {"Authorization": f"Bearer {WEBHOOK_SECRET}"},
        "lowercase-scheme": {"Authorization": f"bearer {WEBHOOK_SECRET}"},
        "padded-bearer": {"Authorization": f"  Bearer {WEBHOOK_SECRET}  "},
        "hmac": {"X-Minio-Signature": digest},
        "hmac-prefixed": {"X-Minio-Signature": "sha256=" + digest},
        "hmac-uppercase": {"X-Minio-Signature": digest.upper()},
        "hmac-with-wrong-bearer": {"Authorization": "Bearer wrong", "X-Minio-Signature": digest},
        "bearer-with-wrong-hmac": {
            "Authorization": f"Bearer {WEBHOOK_SECRET}",
            "X-Minio-Signature": "0" * 64,
        },
    }[recipe]


# -- bodies ------------------------------------------------------------------------------------

json_leaves = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
json_values = st.recursive(
    json_leaves,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
odd_keys = st.one_of(
    st.text(min_size=1, max_size=40),
    st.text(min_size=1, max_size=40).map(lambda k: k + "/"),
    st.text(st.sampled_from('/ .:"*<>?\\|~$_vti%+#\t\x00‛：␠．'), min_size=1, max_size=30),
    st.integers(200, 2000).map(lambda n: "k" * n),
    st.sampled_from(["CON", "nul.txt", ".lock", "desktop.ini", "~$x", "_vti_", "a//b", "/x", " x ", "x."]),
).filter(
    # '.'/'..' segments and whitespace-only keys are refused by the minio client before any
    # request; test_hostile_keys.test_an_event_for_a_key_the_minio_client_refuses_is_not_left_pending
    # pins them. A newline is a key moto cannot serve (an HTML 404): not our code.
    lambda k: not {".", ".."} & set(k.split("/")) and k.strip() and "\n" not in k and "\r" not in k
)
TEMPLATE: dict[str, Any] = json.loads(minio_body(UPLOAD_EVENTS[0], NO_SUCH_BUCKET, "k"))


def record_for(event: str, key: str) -> dict[str, Any]:
    """Return one record of MinIO's shape for `event` on `key` in the bucket that does not exist."""
    record: dict[str, Any] = json.loads(minio_body(event, NO_SUCH_BUCKET, key))["Records"][0]
    return record


@st.composite
def valid_notifications(draw: st.DrawFn) -> dict[str, Any]:
    """Draw a notification the parser accepts: odd keys, unknown events, odd optional fields, many records."""
    event = draw(st.sampled_from(UPLOAD_EVENTS + DELETE_EVENTS + SKIP_EVENTS) | st.text(max_size=30))
    record = record_for(event, draw(odd_keys))
    obj = record["s3"]["object"]
    for field in ("size", "eTag", "versionId", "sequencer"):
        if draw(st.booleans()):
            obj[field] = draw(json_leaves | st.lists(json_leaves, max_size=2))
    if draw(st.booleans()):
        record[draw(st.text(max_size=8))] = draw(json_values)
    records = [record]
    if draw(st.integers(0, 9)) == 0:
        # Many records: metadata-only events (no MinIO or Graph call), so the answer stays fast.
        count = draw(st.integers(2, 300))
        skip = draw(st.sampled_from(SKIP_EVENTS))
        records += [record_for(skip, f"many/{i}") for i in range(count)]
    document = copy.deepcopy(TEMPLATE)
    document["Records"] = records
    return document


NOT_A_LIST = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.text(max_size=5)
    | st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)
)
NOT_A_DICT = (
    st.none() | st.booleans() | st.integers() | st.text(max_size=5) | st.lists(st.integers(), max_size=2)
)
NOT_A_STRING = (
    st.none() | st.booleans() | st.integers() | st.floats() | st.lists(st.text(max_size=3), max_size=2)
)
# Where a record can break: the path below the record, and values that break it there.
BREAKS: list[tuple[tuple[str, ...], st.SearchStrategy[Any]]] = [
    ((), NOT_A_DICT),
    (("eventName",), NOT_A_STRING),
    (("s3",), NOT_A_DICT),
    (("s3", "bucket"), NOT_A_DICT),
    (("s3", "bucket", "name"), NOT_A_STRING | st.just("")),
    (("s3", "object"), NOT_A_DICT),
    (("s3", "object", "key"), NOT_A_STRING | st.just("")),
]
DELETED = object()


@st.composite
def invalid_notifications(draw: st.DrawFn) -> Any:
    """Draw a near-MinIO body the parser must refuse: a field missing, of the wrong type or empty."""
    document = draw(valid_notifications())
    if draw(st.integers(0, 9)) == 0:  # the Records list itself is missing or not a list
        if draw(st.booleans()):
            del document["Records"]
        else:
            document["Records"] = draw(NOT_A_LIST)
        return draw(st.sampled_from([document, [document]]))
    records = document["Records"]
    index = draw(st.integers(0, len(records) - 1))
    path, values = draw(st.sampled_from(BREAKS))
    value = draw(st.just(DELETED) | values) if path else draw(values)
    if not path:
        records[index] = value
        return document
    target = records[index]
    for step in path[:-1]:
        target = target[step]
    if value is DELETED:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return document


def encode(document: Any) -> bytes:
    """Serialise `document` as a sender would (NaN and infinities as Python writes them)."""
    return json.dumps(document).encode()


def is_notification(body: bytes) -> bool:
    """Tell whether `body` is JSON holding a Records list (the only bodies that are not 400 or a ping)."""
    try:
        document = json.loads(body)
    except ValueError:
        return False
    return isinstance(document, dict) and isinstance(document.get("Records"), list)


any_body = st.one_of(
    st.binary(max_size=512),
    json_values.map(encode),
    valid_notifications().map(encode),
    invalid_notifications().map(encode),
    st.sampled_from([b"", b" ", b"\n", b"{}", b"[]", b"null", b'{"Records": []}', b'{"Records": {}}']),
)


@dataclass(frozen=True)
class Snapshot:
    """What a refused request must leave as it was: the journal and the library."""

    journal_rows: int
    files: dict[str, bytes]
    folders: set[str]


@dataclass(frozen=True)
class Answer:
    """The app's answer to one request, and how many Graph requests it caused."""

    status: int
    json: Any
    text: str
    graph_requests: int


@dataclass
class Webhook:
    """Post to `/s3event` through the test client; observe the journal, the library and Graph."""

    client: FlaskClient
    services: Services
    drive: FakeDrive
    graph: FakeGraph

    def post(self, body: bytes, headers: dict[str, str], content_type: str = "application/json") -> Answer:
        """Send one request; count the Graph requests made while it was answered."""
        self.graph.reset_counters()
        response = self.client.post("/s3event", data=body, headers=headers, content_type=content_type)
        return Answer(
            response.status_code,
            response.get_json(silent=True),
            response.get_data(as_text=True),
            self.graph.count(),
        )

    def snapshot(self) -> Snapshot:
        """Record how many rows the journal holds and what the library holds."""
        rows = self.services.journal.items("pending", "running", "dead", "done")
        return Snapshot(len(rows), self.drive.files(), self.drive.folders())


@pytest.fixture
def webhook(client: FlaskClient, services: Services, drive: FakeDrive, graph: FakeGraph) -> Webhook:
    """Return the webhook of a fresh app, with an empty library."""
    return Webhook(client, services, drive, graph)


# -- properties --------------------------------------------------------------------------------


@settings(FUZZ, max_examples=2000)
@given(data=st.data(), body=any_body, content_type=content_types)
def test_missing_or_wrong_credentials_are_refused_with_no_side_effect(
    webhook: Webhook, data: st.DataObject, body: bytes, content_type: str
) -> None:
    """Without valid credentials: 401 when none are sent, 403 when wrong; no Graph call, journal or file."""
    expected, headers = bad_headers_for(data.draw(bad_recipes), body)
    before = webhook.snapshot()
    answer = webhook.post(body, headers, content_type)
    assert answer.status == expected, (headers, answer.text)
    assert answer.graph_requests == 0
    assert webhook.snapshot() == before


@settings(FUZZ, max_examples=600)
@given(data=st.data(), body=st.one_of(st.binary(max_size=512), json_values.map(encode)))
def test_an_authenticated_body_that_is_not_a_notification_is_400_and_changes_nothing(
    webhook: Webhook, data: st.DataObject, body: bytes
) -> None:
    """Valid credentials, body not JSON with a Records list: 400 (200 for a blank ping), nothing done."""
    assume(not is_notification(body))
    before = webhook.snapshot()
    answer = webhook.post(body, good_headers_for(data.draw(good_recipes), body))
    if body.strip():
        assert answer.status == 400, answer.text
        assert answer.json["error"]
    else:
        assert (answer.status, answer.json) == (200, {"outcomes": []})
    assert answer.graph_requests == 0
    assert webhook.snapshot() == before


@settings(FUZZ, max_examples=400)
@given(data=st.data(), document=invalid_notifications())
def test_a_near_minio_body_with_a_broken_record_is_400_and_changes_nothing(
    webhook: Webhook, data: st.DataObject, document: Any
) -> None:
    """A record lacking bucket, key, event or s3, or one of the wrong type: 400 for the body, nothing done."""
    body = encode(document)
    before = webhook.snapshot()
    answer = webhook.post(body, good_headers_for(data.draw(good_recipes), body))
    assert answer.status == 400, answer.text
    assert answer.graph_requests == 0
    assert webhook.snapshot() == before


@settings(FUZZ, max_examples=250)
@given(data=st.data(), document=valid_notifications())
def test_an_odd_but_valid_notification_is_200_with_one_outcome_per_record_and_no_file(
    webhook: Webhook, data: st.DataObject, document: dict[str, Any]
) -> None:
    """Odd keys, unknown events, odd fields, many records, in a bucket S3 lacks: 200, nothing written."""
    body = encode(document)
    answer = webhook.post(body, good_headers_for(data.draw(good_recipes), body))
    assert answer.status == 200, answer.text
    outcomes = answer.json["outcomes"]
    assert len(outcomes) == len(document["Records"])
    for outcome in outcomes:
        assert outcome["outcome"] in {"skipped", "absent", "failed"}, outcome
        assert outcome["outcome"] != "failed" or outcome["reason"], outcome
    assert webhook.drive.files() == {}
    assert webhook.drive.folders() == set()
    assert webhook.services.journal.depth() == 0


@settings(FUZZ, max_examples=500)
@given(data=st.data(), body=any_body, content_type=content_types)
def test_any_request_gets_a_documented_status(
    webhook: Webhook, data: st.DataObject, body: bytes, content_type: str
) -> None:
    """Any body with any credentials gets a documented status, never a 5xx, and writes no file."""
    if data.draw(st.booleans()):
        headers = bad_headers_for(data.draw(bad_recipes), body)[1]
    else:
        headers = good_headers_for(data.draw(good_recipes), body)
    answer = webhook.post(body, headers, content_type)
    assert answer.status in DOCUMENTED, answer.text
    assert answer.status != 202  # nothing here is slow or transient
    assert webhook.drive.files() == {}


# -- cases a fuzzer reaches rarely -------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "allowed"),
    [
        ({}, {401}),
        ({"Authorization": "Bearer wrong"}, {403}),  # a bearer is checked before the size
        ({"X-Minio-Signature": "0" * 64}, {413}),  # a signature needs the body: size first
        ({"Authorization": f"Bearer {WEBHOOK_SECRET}"}, {413}),
    ],
    ids=["none", "wrong-bearer", "wrong-signature", "valid"],
)
def test_an_oversized_body_is_refused_whatever_the_credentials(
    webhook: Webhook, headers: dict[str, str], allowed: set[int]
) -> None:
    """A body over 1 MiB: 401 without credentials, 403 for a wrong bearer, else 413; nothing done."""
    before = webhook.snapshot()
    answer = webhook.post(b'{"Records": [' + b" " * MAX_BODY_BYTES + b"]}", headers)
    assert answer.status in allowed
    assert answer.graph_requests == 0
    assert webhook.snapshot() == before


@pytest.mark.parametrize("field", ["key", "bucket", "eventName"])
def test_a_lone_surrogate_escape_in_a_notification_is_no_5xx(webhook: Webhook, field: str) -> None:
    r"""JSON may escape a lone UTF-16 surrogate (\ud800), which UTF-8 cannot hold: 200 or 400, never 5xx."""
    document = json.loads(minio_body(UPLOAD_EVENTS[0], NO_SUCH_BUCKET, "k"))
    record = document["Records"][0]
    if field == "key":
        record["s3"]["object"]["key"] = "bad\ud800key"
    elif field == "bucket":
        record["s3"]["bucket"]["name"] = "bad\ud800bucket"
    else:
        record["eventName"] = UPLOAD_EVENTS[0] + "\ud800"
    body = encode(document)
    assert b"\\ud800" in body  # json.dumps writes the escape; the app's json.loads reads it back
    answer = webhook.post(body, good_headers_for("bearer", body))
    assert answer.status in {200, 400}, answer.text
    assert webhook.drive.files() == {}
    assert webhook.services.journal.depth() == 0
    assert webhook.client.get("/metrics").status_code == 200  # event names feed a metrics label
