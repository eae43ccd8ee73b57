"""Provide the test servers as pytest fixtures (load with `pytest_plugins`).

Servers live for the session; `drive` and `bucket` give each test a clean library and a
fresh bucket, with faults and counters reset.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import minio
import pytest

from tests.support.graph import FakeDrive, FakeGraph
from tests.support.idp import IdentityProvider
from tests.support.s3 import S3Server
from tests.support.tls import ClientCredential, TestPKI

CLIENT_ID = "11111111-2222-3333-4444-555555555555"


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> TestPKI:
    """Make the session's certificate authority."""
    return TestPKI(Path(tmp_path_factory.mktemp("pki")))


@pytest.fixture(scope="session")
def idp(pki: TestPKI) -> Iterator[IdentityProvider]:
    """Run the identity provider, with requests and the stdlib trusting the test CA."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("REQUESTS_CA_BUNDLE", str(pki.ca_path))
        patch.setenv("SSL_CERT_FILE", str(pki.ca_path))
        with IdentityProvider(pki) as provider:
            yield provider


@pytest.fixture(scope="session")
def client_credential(pki: TestPKI, idp: IdentityProvider) -> ClientCredential:
    """Make the app's certificate and key, registered with the identity provider as CLIENT_ID."""
    credential = pki.client_credential("sharepoint-proxy")
    idp.register_client(CLIENT_ID, credential.cert_pem)
    return credential


@pytest.fixture(scope="session")
def graph(pki: TestPKI, idp: IdentityProvider) -> Iterator[FakeGraph]:
    """Run the fake Microsoft Graph."""
    with FakeGraph(pki, idp) as server:
        yield server


@pytest.fixture
def drive(graph: FakeGraph, idp: IdentityProvider) -> FakeDrive:
    """Return the default library, emptied, with Graph's and the IdP's faults and counters reset."""
    graph.reset()
    idp.reset()
    return graph.drive("Documents")


@pytest.fixture(scope="session")
def s3() -> Iterator[S3Server]:
    """Run moto's S3 server."""
    with S3Server() as server:
        yield server


@pytest.fixture(scope="session")
def minio_client(s3: S3Server) -> minio.Minio:
    """Return a minio client for the S3 server."""
    return s3.client()


@pytest.fixture
def bucket(minio_client: minio.Minio, s3: S3Server) -> Iterator[str]:
    """Create a fresh bucket for one test, and empty and remove it afterwards."""
    name = f"test-{uuid.uuid4().hex[:16]}"
    minio_client.make_bucket(name)
    s3.reset_counters()
    yield name
    for obj in minio_client.list_objects(name, recursive=True, include_version=True):
        if obj.object_name is not None:
            minio_client.remove_object(name, obj.object_name, version_id=obj.version_id)
    minio_client.remove_bucket(name)
