"""Build webhook bodies shaped exactly like MinIO's, from the shared fixtures."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

FIXTURES = Path(__file__).resolve().parents[2].parent / "shared" / "fixtures" / "minio-events"


@cache
def _template() -> dict[str, Any]:
    return json.loads((FIXTURES / "put-unversioned.json").read_text())  # type: ignore[no-any-return]


def minio_body(
    event_name: str,
    bucket: str,
    key: str,
    *,
    size: int | None = None,
    etag: str | None = None,
    version_id: str | None = None,
) -> bytes:
    """Return the JSON MinIO would POST for `event_name` on `bucket`/`key`."""
    body = copy.deepcopy(_template())
    body["EventName"] = event_name
    body["Key"] = f"{bucket}/{key}"
    record = body["Records"][0]
    record["eventName"] = event_name
    record["s3"]["bucket"]["name"] = bucket
    record["s3"]["bucket"]["arn"] = f"arn:aws:s3:::{bucket}"
    obj: dict[str, Any] = {"key": quote_plus(key, safe=""), "sequencer": "1862C0F2A1F0B3C8"}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    if version_id is not None:
        obj["versionId"] = version_id
    record["s3"]["object"] = obj
    return json.dumps(body).encode()
