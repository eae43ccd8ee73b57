"""Reading and validating settings."""

from __future__ import annotations

from pathlib import Path

import pytest

from sharepoint_proxy.config import Config
from sharepoint_proxy.errors import ConfigError


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    cert = tmp_path / "c.pem"
    key = tmp_path / "k.pem"
    cert.write_text("cert")
    key.write_text("key")
    return {
        "TENANT_ID": "tenant",
        "CLIENT_ID": "client",
        "CERT_PATH": str(cert),
        "KEY_PATH": str(key),
        "SITE_PATH": "contoso.sharepoint.com:/sites/mirror",
        "WEBHOOK_SECRET": "hunter2-webhook",
        "MINIO_ROOT_USER": "minio",
        "MINIO_ROOT_PASSWORD": "minio-secret-password",
    }


def test_defaults(env: dict[str, str]) -> None:
    """Only the required variables give the documented defaults."""
    config = Config.from_env(env)
    assert config.authority == "https://login.microsoftonline.com/tenant"
    assert config.graph_base_url == "https://graph.microsoft.com/v1.0"
    assert config.graph_scope == "https://graph.microsoft.com/.default"
    assert config.minio_endpoint == "http://minio:9000"
    assert (config.minio_access_key, config.minio_secret_key) == ("minio", "minio-secret-password")
    assert config.simple_upload_max_bytes == 4 * 1024 * 1024
    assert config.upload_chunk_bytes == 10 * 1024 * 1024
    assert config.response_deadline_seconds == 45
    assert config.delete_mode == "recycle"
    assert config.minio_webhook_id == "SHAREPOINT"
    assert (config.site_hostname, config.site_relative_path) == ("contoso.sharepoint.com", "/sites/mirror")


def test_scope_follows_a_sovereign_graph(env: dict[str, str]) -> None:
    """GRAPH_SCOPE defaults to the scheme and host of GRAPH_BASE_URL."""
    env["GRAPH_BASE_URL"] = "https://graph.microsoft.us/v1.0/"
    config = Config.from_env(env)
    assert config.graph_scope == "https://graph.microsoft.us/.default"
    assert config.graph_base_url == "https://graph.microsoft.us/v1.0"


def test_every_bad_variable_is_named_at_once(env: dict[str, str]) -> None:
    """One error lists every missing or invalid variable."""
    del env["TENANT_ID"], env["WEBHOOK_SECRET"]
    env.update(
        CERT_PATH="/nonexistent.pem",
        UPLOAD_CHUNK_BYTES="1000000",
        SIMPLE_UPLOAD_MAX_BYTES="lots",
        AUTHORITY="http://login.example",
        DELETE_MODE="shred",
        LOG_FORMAT="xml",
        SITE_PATH="https://contoso.sharepoint.com/sites/x",
        RESPONSE_DEADLINE_SECONDS="90",
        MINIO_ENDPOINT="minio:9000",
    )
    with pytest.raises(ConfigError) as caught:
        Config.from_env(env)
    named = {p.split(":")[0] for p in caught.value.problems}
    assert named >= {
        "TENANT_ID", "WEBHOOK_SECRET", "CERT_PATH", "UPLOAD_CHUNK_BYTES", "SIMPLE_UPLOAD_MAX_BYTES",
        "AUTHORITY", "DELETE_MODE", "LOG_FORMAT", "SITE_PATH", "RESPONSE_DEADLINE_SECONDS", "MINIO_ENDPOINT",
    }


def test_simple_upload_limit_cannot_exceed_the_chunk(env: dict[str, str]) -> None:
    """A simple PUT holds the object in memory, so it may not be larger than a chunk."""
    env.update(SIMPLE_UPLOAD_MAX_BYTES=str(20 * 1024 * 1024))
    with pytest.raises(ConfigError, match="SIMPLE_UPLOAD_MAX_BYTES"):
        Config.from_env(env)


@pytest.mark.parametrize(
    "folder",
    ["CON", "Mirror/_vti_bin", "notes.", " Mirror", "Mirror /x", "a:b", "Q3?", "~$draft", "a//b",
     "tab\tname"],
)
def test_target_folder_names_sharepoint_refuses_stop_the_start(env: dict[str, str], folder: str) -> None:
    """TARGET_FOLDER is written as is (not encoded like keys): a name SharePoint refuses
    would fail every event, so it is refused at start."""
    env["TARGET_FOLDER"] = folder
    with pytest.raises(ConfigError, match="TARGET_FOLDER"):
        Config.from_env(env)


@pytest.mark.parametrize("folder", ["Mirror", "/Archives/MinIO 2026/", "Données/été", "a.b/c-d_e"])
def test_ordinary_target_folders_are_accepted(env: dict[str, str], folder: str) -> None:
    """Folder paths with spaces inside names, dots inside names and non-ASCII are fine."""
    env["TARGET_FOLDER"] = folder
    assert Config.from_env(env).target_folder == folder.strip("/")


def test_secrets_stay_out_of_repr(env: dict[str, str]) -> None:
    """The webhook secret, MinIO secret and key passphrase never show in repr."""
    env["KEY_PASSPHRASE"] = "passphrase-value"
    text = repr(Config.from_env(env))
    for secret in ("hunter2-webhook", "minio-secret-password", "passphrase-value"):
        assert secret not in text
