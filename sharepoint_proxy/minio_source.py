"""Read objects from MinIO (or any S3 server) with the `minio` client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Protocol

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError as Urllib3Error

from .config import Config
from .errors import PermanentError, SourceChangedError, TransientError

ABSENT_CODES = frozenset({"NoSuchKey", "NoSuchBucket", "NoSuchVersion", "MethodNotAllowed"})
DENIED_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"})


@dataclass(frozen=True)
class ObjectInfo:
    """What a stat tells about the current version of an object."""

    bucket: str
    key: str
    etag: str
    size: int
    version_id: str | None = None


class Readable(Protocol):
    """A byte stream the Graph client can read chunks from."""

    def read(self, amt: int | None = None) -> bytes:
        """Return up to `amt` bytes; fewer only at the end of the stream."""
        ...


class Source(Protocol):
    """What the mirror needs from the object store."""

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        """Return the object's current version, or None when it does not exist."""
        ...

    def open(self, info: ObjectInfo) -> AbstractContextManager[Readable]:
        """Open a stream of exactly the version `info` describes."""
        ...


def make_http_client(*, max_connections: int = 32) -> urllib3.PoolManager:
    """Build the urllib3 pool the minio client uses: timeouts, a few retries, SSL_CERT_FILE trust."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=10, read=60),
        maxsize=max_connections,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(
            total=3, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]
        ),
    )


class MinioSource:
    """Stat and stream objects from MinIO, translating its errors into ours."""

    def __init__(self, client: Minio) -> None:
        self._client = client

    @classmethod
    def from_config(cls, config: Config) -> MinioSource:
        """Connect to the MinIO endpoint the configuration names (no request is made yet)."""
        client = Minio(
            config.minio_netloc,
            access_key=config.minio_access_key,
            secret_key=config.minio_secret_key,
            secure=config.minio_secure,
            region=config.minio_region,
            http_client=make_http_client(),
        )
        return cls(client)

    @property
    def client(self) -> Minio:
        """Return the underlying minio client (for the CLI's bucket commands)."""
        return self._client

    def stat(self, bucket: str, key: str) -> ObjectInfo | None:
        """Return the object's current version, or None when it does not exist."""
        try:
            stat = self._client.stat_object(bucket, key)
        except ValueError as exc:  # the minio client refuses the name itself, before any request
            raise PermanentError("invalid_s3_name", f"the S3 client refuses the name {bucket}/{key}") from exc
        except S3Error as exc:
            if exc.code in ABSENT_CODES:
                return None
            raise _translate(exc, f"stat {bucket}/{key}") from exc
        except (MinioException, Urllib3Error, OSError) as exc:
            raise TransientError(f"MinIO stat failed: {type(exc).__name__}") from exc
        if stat.is_delete_marker:
            return None
        return ObjectInfo(
            bucket=bucket,
            key=key,
            etag=stat.etag or "",
            size=int(stat.size or 0),
            version_id=stat.version_id if stat.version_id not in (None, "null") else None,
        )

    @contextmanager
    def open(self, info: ObjectInfo) -> Iterator[Readable]:
        """Stream exactly the version `info` describes; raise SourceChangedError if it moved on."""
        headers: dict[str, str | list[str] | tuple[str]] = {}
        if not info.version_id:
            headers["If-Match"] = f'"{info.etag}"'
        try:
            response = self._client.get_object(
                info.bucket, info.key, version_id=info.version_id, request_headers=headers
            )
        except S3Error as exc:
            if exc.code in ("PreconditionFailed", *ABSENT_CODES):
                raise SourceChangedError(f"{info.bucket}/{info.key} changed since stat") from exc
            raise _translate(exc, f"get {info.bucket}/{info.key}") from exc
        except (MinioException, Urllib3Error, OSError) as exc:
            raise TransientError(f"MinIO get failed: {type(exc).__name__}") from exc
        try:
            yield _RawStream(response)
        finally:
            # Read to the end, the connection goes back to the pool for the next stat or GET
            # (keep-alive); a stream left unfinished must not be reused, so it is closed.
            if not response.closed:
                response.close()
            response.release_conn()


class _RawStream:
    """Read an urllib3 response's bytes as sent (no content decoding), errors translated."""

    def __init__(self, response: urllib3.BaseHTTPResponse) -> None:
        self._response = response

    def read(self, amt: int | None = None) -> bytes:
        try:
            return self._response.read(amt, decode_content=False)
        except (Urllib3Error, OSError) as exc:
            raise TransientError(f"MinIO stream broke: {type(exc).__name__}") from exc


def _translate(exc: S3Error, what: str) -> Exception:
    if exc.code in DENIED_CODES:
        return PermanentError("source_access_denied", f"MinIO refused {what}: {exc.code}")
    return TransientError(f"MinIO {what} failed: {exc.code}")
