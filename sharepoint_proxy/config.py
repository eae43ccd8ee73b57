"""Read and validate the service's settings from an environment mapping."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from .errors import ConfigError
from .paths import is_legal_name

CHUNK_ALIGNMENT = 327_680  # Graph: every chunk but the last is a multiple of 320 KiB
MAX_CHUNK_BYTES = 60 * 1024 * 1024  # Graph: each chunk under 60 MiB
MAX_SIMPLE_UPLOAD_BYTES = 250 * 1000 * 1000  # Graph: a simple PUT takes up to 250 MB
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

T = TypeVar("T")


@dataclass(frozen=True)
class Config:
    """Every setting of the service, validated; secrets are left out of `repr`."""

    tenant_id: str
    client_id: str
    cert_path: Path
    key_path: Path
    site_path: str
    webhook_secret: str = field(repr=False)
    key_passphrase: str | None = field(default=None, repr=False)
    document_library: str | None = None
    target_folder: str = ""
    minio_endpoint: str = "http://minio:9000"
    minio_access_key: str = ""
    minio_secret_key: str = field(default="", repr=False)
    minio_region: str = "us-east-1"
    buckets: tuple[str, ...] = ()
    minio_webhook_id: str = "SHAREPOINT"
    authority: str = ""
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    graph_scope: str = "https://graph.microsoft.com/.default"
    simple_upload_max_bytes: int = 4 * 1024 * 1024
    upload_chunk_bytes: int = 10 * 1024 * 1024
    state_dir: Path = Path("/var/lib/sharepoint-proxy")
    response_deadline_seconds: float = 45.0
    delete_mode: str = "recycle"
    log_level: str = "INFO"
    log_format: str = "text"

    @property
    def site_hostname(self) -> str:
        """Return the SharePoint host of `site_path` (`tenant.sharepoint.com`)."""
        return self.site_path.split(":", 1)[0]

    @property
    def site_relative_path(self) -> str:
        """Return the server-relative site path of `site_path` (`/sites/site`)."""
        return self.site_path.split(":", 1)[1]

    @property
    def minio_secure(self) -> bool:
        """Tell whether MinIO is reached over TLS (the endpoint's scheme decides)."""
        return urlsplit(self.minio_endpoint).scheme == "https"

    @property
    def minio_netloc(self) -> str:
        """Return `host:port` of the MinIO endpoint, as the minio client takes it."""
        return urlsplit(self.minio_endpoint).netloc

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Config:
        """Build the configuration from `environ`, naming every bad variable at once."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)

        tenant_id = reader.required("TENANT_ID")
        client_id = reader.required("CLIENT_ID")
        cert_path = reader.readable_file("CERT_PATH")
        key_path = reader.readable_file("KEY_PATH")
        site_path = reader.check(
            "SITE_PATH",
            reader.required("SITE_PATH"),
            lambda v: ":/" in v and not v.startswith(("http://", "https://")),
            "must look like tenant.sharepoint.com:/sites/site",
        )
        webhook_secret = reader.required("WEBHOOK_SECRET")
        authority = reader.https_url(
            "AUTHORITY", env.get("AUTHORITY") or f"https://login.microsoftonline.com/{tenant_id}"
        )
        graph_base_url = reader.https_url(
            "GRAPH_BASE_URL", env.get("GRAPH_BASE_URL") or "https://graph.microsoft.com/v1.0"
        )
        parts = urlsplit(graph_base_url)
        graph_scope = env.get("GRAPH_SCOPE") or f"{parts.scheme}://{parts.netloc}/.default"
        minio_endpoint = reader.check(
            "MINIO_ENDPOINT",
            env.get("MINIO_ENDPOINT") or "http://minio:9000",
            lambda v: (
                urlsplit(v).scheme in ("http", "https")
                and bool(urlsplit(v).netloc)
                and urlsplit(v).path in ("", "/")
            ),
            "must be a URL such as http://minio:9000, with no path",
        )
        minio_access_key = env.get("MINIO_ACCESS_KEY") or env.get("MINIO_ROOT_USER") or ""
        minio_secret_key = env.get("MINIO_SECRET_KEY") or env.get("MINIO_ROOT_PASSWORD") or ""
        if not minio_access_key:
            reader.problems.append("MINIO_ACCESS_KEY: required (or MINIO_ROOT_USER)")
        if not minio_secret_key:
            reader.problems.append("MINIO_SECRET_KEY: required (or MINIO_ROOT_PASSWORD)")
        chunk = reader.integer("UPLOAD_CHUNK_BYTES", 10 * 1024 * 1024)
        reader.check(
            "UPLOAD_CHUNK_BYTES",
            chunk,
            lambda v: v > 0 and v % CHUNK_ALIGNMENT == 0 and v < MAX_CHUNK_BYTES,
            f"must be a positive multiple of {CHUNK_ALIGNMENT} below {MAX_CHUNK_BYTES}",
        )
        simple_max = reader.integer("SIMPLE_UPLOAD_MAX_BYTES", 4 * 1024 * 1024)
        reader.check(
            "SIMPLE_UPLOAD_MAX_BYTES",
            simple_max,
            lambda v: 0 <= v <= MAX_SIMPLE_UPLOAD_BYTES,
            f"must be between 0 and {MAX_SIMPLE_UPLOAD_BYTES}",
        )
        reader.check(
            "SIMPLE_UPLOAD_MAX_BYTES",
            simple_max,
            lambda v: v <= chunk,
            "must not exceed UPLOAD_CHUNK_BYTES (a simple upload is held in memory like a chunk)",
        )
        deadline = reader.number("RESPONSE_DEADLINE_SECONDS", 45.0)
        reader.check(
            "RESPONSE_DEADLINE_SECONDS",
            deadline,
            lambda v: 0 < v < 60,
            "must be above 0 and below 60 (MinIO waits 60 s for an answer)",
        )
        target_folder = (env.get("TARGET_FOLDER") or "").strip("/")
        reader.check(
            "TARGET_FOLDER",
            target_folder,
            lambda v: all(is_legal_name(name) for name in v.split("/")) if v else True,
            "must be a folder path whose names SharePoint accepts (no reserved names such as CON "
            "or _vti_, no trailing period or leading/trailing space, none of \" * : < > ? \\ |)",
        )
        config = cls(
            tenant_id=tenant_id,
            client_id=client_id,
            cert_path=cert_path,
            key_path=key_path,
            key_passphrase=env.get("KEY_PASSPHRASE") or None,
            site_path=site_path,
            document_library=env.get("DOCUMENT_LIBRARY") or None,
            target_folder=target_folder,
            webhook_secret=webhook_secret,
            minio_endpoint=minio_endpoint.rstrip("/"),
            minio_access_key=minio_access_key,
            minio_secret_key=minio_secret_key,
            minio_region=env.get("MINIO_REGION") or "us-east-1",
            buckets=tuple(b.strip() for b in (env.get("BUCKETS") or "").split(",") if b.strip()),
            minio_webhook_id=env.get("MINIO_WEBHOOK_ID") or "SHAREPOINT",
            authority=authority.rstrip("/"),
            graph_base_url=graph_base_url.rstrip("/"),
            graph_scope=graph_scope,
            simple_upload_max_bytes=simple_max,
            upload_chunk_bytes=chunk,
            state_dir=Path(env.get("STATE_DIR") or "/var/lib/sharepoint-proxy"),
            response_deadline_seconds=deadline,
            delete_mode=reader.choice("DELETE_MODE", "recycle", ("recycle", "permanent")),
            log_level=reader.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            log_format=reader.choice("LOG_FORMAT", "text", ("text", "json")),
        )
        if reader.problems:
            raise ConfigError(reader.problems)
        return config


class _Reader:
    """Collect problems while reading variables, so one error can name them all."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env
        self.problems: list[str] = []

    def required(self, name: str) -> str:
        value = (self.env.get(name) or "").strip()
        if not value:
            self.problems.append(f"{name}: required")
        return value

    def check(self, name: str, value: T, ok: Callable[[T], bool], message: str) -> T:
        if value not in ("", None) and not ok(value):
            self.problems.append(f"{name}: {message} (got {value!r})")
        return value

    def readable_file(self, name: str) -> Path:
        value = self.required(name)
        path = Path(value)
        if value and not (path.is_file() and os.access(path, os.R_OK)):
            self.problems.append(f"{name}: no readable file at {value}")
        return path

    def https_url(self, name: str, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme != "https" or not parts.netloc:
            self.problems.append(f"{name}: must be an https:// URL (got {value!r})")
        return value

    def integer(self, name: str, default: int) -> int:
        raw = self.env.get(name)
        if not raw:
            return default
        try:
            return int(raw.replace("_", ""))
        except ValueError:
            self.problems.append(f"{name}: must be a whole number of bytes (got {raw!r})")
            return default

    def number(self, name: str, default: float) -> float:
        raw = self.env.get(name)
        if not raw:
            return default
        try:
            return float(raw)
        except ValueError:
            self.problems.append(f"{name}: must be a number (got {raw!r})")
            return default

    def choice(self, name: str, default: str, allowed: tuple[str, ...], *, upper: bool = False) -> str:
        raw = self.env.get(name) or default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            self.problems.append(f"{name}: must be one of {', '.join(allowed)} (got {raw!r})")
            return default
        return value
