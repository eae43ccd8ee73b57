"""Parse MinIO bucket notifications into records the mirror can act on."""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_plus

from .errors import BadPayloadError
from .paths import has_lone_surrogate

UPLOAD_EVENTS = frozenset(
    {
        "s3:ObjectCreated:Put",
        "s3:ObjectCreated:Post",
        "s3:ObjectCreated:Copy",
        "s3:ObjectCreated:CompleteMultipartUpload",
    }
)
DELETE_EVENTS = frozenset(
    {
        "s3:ObjectRemoved:Delete",
        "s3:ObjectRemoved:DeleteMarkerCreated",
        "s3:ObjectRemoved:DeleteAllVersions",
        "s3:LifecycleDelMarkerExpiration:Delete",
    }
)

# Events that are answered 200 and skipped: the object's bytes did not change.
METADATA_EVENTS = frozenset(
    {
        "s3:ObjectCreated:PutTagging",
        "s3:ObjectCreated:DeleteTagging",
        "s3:ObjectCreated:PutRetention",
        "s3:ObjectCreated:PutLegalHold",
        "s3:ObjectRemoved:NoOP",
    }
)
KNOWN_EVENTS = UPLOAD_EVENTS | DELETE_EVENTS | METADATA_EVENTS


class Action(enum.Enum):
    """What a record asks of the mirror."""

    UPLOAD = "upload"
    DELETE = "delete"
    SKIP = "skip"


@dataclass(frozen=True)
class Record:
    """One object event, its key decoded."""

    event_name: str
    action: Action
    bucket: str
    key: str
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    sequencer: str | None = None


def classify(event_name: str) -> Action:
    """Return what the mirror does for `event_name`; anything unknown is skipped."""
    if event_name in UPLOAD_EVENTS:
        return Action.UPLOAD
    if event_name in DELETE_EVENTS:
        return Action.DELETE
    return Action.SKIP


def parse_notification(body: bytes) -> list[Record]:
    """Parse a MinIO `notify_webhook` body into records; raise BadPayloadError if it is not one."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadPayloadError(f"body is not JSON: {exc}") from exc
    except RecursionError as exc:  # `[[[[...` nested deeper than Python's stack
        raise BadPayloadError("body is not a MinIO notification: JSON nested too deep") from exc
    if not isinstance(document, dict) or not isinstance(document.get("Records"), list):
        raise BadPayloadError("body has no Records list")
    return [_parse_record(index, raw) for index, raw in enumerate(document["Records"])]


def _parse_record(index: int, raw: Any) -> Record:
    where = f"Records[{index}]"
    if not isinstance(raw, dict):
        raise BadPayloadError(f"{where} is not an object")
    event_name = raw.get("eventName")
    s3 = raw.get("s3")
    if not isinstance(event_name, str) or not isinstance(s3, dict):
        raise BadPayloadError(f"{where} has no eventName or s3")
    bucket = s3.get("bucket")
    obj = s3.get("object")
    bucket_name = bucket.get("name") if isinstance(bucket, dict) else None
    escaped_key = obj.get("key") if isinstance(obj, dict) else None
    if not isinstance(bucket_name, str) or not bucket_name:
        raise BadPayloadError(f"{where} has no s3.bucket.name")
    if not isinstance(escaped_key, str) or not escaped_key or not isinstance(obj, dict):
        raise BadPayloadError(f"{where} has no s3.object.key")
    key = unquote_plus(escaped_key)
    if has_lone_surrogate(bucket_name + key):
        raise BadPayloadError(f"{where} has a bucket or key holding a lone UTF-16 surrogate")
    size = obj.get("size")
    return Record(
        event_name=event_name,
        action=classify(event_name),
        bucket=bucket_name,
        # MinIO escapes the key with Go's url.QueryEscape: space is "+", "+" is "%2B".
        key=key,
        version_id=_optional_str(obj.get("versionId")),
        etag=_optional_str(obj.get("eTag")),
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
        sequencer=_optional_str(obj.get("sequencer")),
    )


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None
