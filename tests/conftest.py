"""Fixture chain for the whole suite: servers -> environment -> config -> services -> app -> client."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import settings

pytest_plugins = ["tests.support.fixtures"]

# No per-example deadline: on a loaded CI machine a descheduled process can exceed the default
# 200 ms, which fails the test for the machine's sake. Everything else stays Hypothesis's
# default; a test's own @settings(...) still applies on top of this profile.
settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")

if TYPE_CHECKING:
    from flask import Flask
    from flask.testing import FlaskClient

    from sharepoint_proxy.app import Services
    from sharepoint_proxy.config import Config
    from tests.support.graph import FakeGraph
    from tests.support.gunicorn import Gunicorn
    from tests.support.idp import IdentityProvider
    from tests.support.s3 import S3Server
    from tests.support.tls import ClientCredential, TestPKI

WEBHOOK_SECRET = "test-webhook-secret-0123456789"
SITE_PATH = "contoso.sharepoint.com:/sites/mirror"


@pytest.fixture
def env(
    tmp_path: Path,
    idp: IdentityProvider,
    graph: FakeGraph,
    s3: S3Server,
    client_credential: ClientCredential,
) -> dict[str, str]:
    """Return the environment a real deployment would have, pointed at the local servers."""
    from tests.support.fixtures import CLIENT_ID

    return {
        "TENANT_ID": "test-tenant",
        "CLIENT_ID": CLIENT_ID,
        "CERT_PATH": str(client_credential.cert_path),
        "KEY_PATH": str(client_credential.key_path),
        "SITE_PATH": SITE_PATH,
        "WEBHOOK_SECRET": WEBHOOK_SECRET,
        "MINIO_ENDPOINT": s3.endpoint,
        "MINIO_ACCESS_KEY": s3.access_key,
        "MINIO_SECRET_KEY": s3.secret_key,
        "AUTHORITY": idp.authority,
        "GRAPH_BASE_URL": graph.base_url,
        "STATE_DIR": str(tmp_path / "state"),
    }


@pytest.fixture
def config(env: dict[str, str]) -> Config:
    """Return the validated configuration for `env`."""
    from sharepoint_proxy.config import Config

    return Config.from_env(env)


@pytest.fixture
def services(config: Config) -> Iterator[Services]:
    """Return the production adapters wired to the local servers, with a short retry budget."""
    from sharepoint_proxy.app import Services

    services = Services.from_config(config, retry_budget_seconds=8.0)
    yield services
    services.close()


@pytest.fixture
def app(config: Config, services: Services) -> Flask:
    """Return the application as `create_app` builds it."""
    from sharepoint_proxy.app import create_app

    return create_app(config, services=services)


@pytest.fixture
def client(app: Flask) -> Iterator[FlaskClient]:
    """Return a test client of the application."""
    with app.test_client() as client:
        yield client


@pytest.fixture
def gunicorn(env: dict[str, str], pki: TestPKI, tmp_path: Path) -> Iterator[Gunicorn]:
    """Run the real gunicorn command against the local servers for one test."""
    from tests.support.gunicorn import Gunicorn

    server = Gunicorn(env, pki.ca_path, tmp_path / "gunicorn.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()
