"""Pin the test harness itself: the identity provider, fake Graph and S3 behave as the real ones do.

Each test uses a real client (msal, requests, minio) against the servers in `tests/support`.
"""

from __future__ import annotations

import io
import time
import uuid
from collections.abc import Iterator
from urllib.parse import quote

import jwt
import minio
import msal
import pytest
import requests

from tests.support.fixtures import CLIENT_ID
from tests.support.graph import CHUNK_MULTIPLE, FakeDrive, FakeGraph
from tests.support.idp import ASSERTION_TYPE, IdentityProvider
from tests.support.s3 import S3Server
from tests.support.tls import ClientCredential, TestPKI

TIMEOUT = 10


def _msal_app(
    idp: IdentityProvider, credential: ClientCredential, client_id: str = CLIENT_ID
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        client_id,
        authority=idp.authority,
        client_credential=credential.msal_credential(),
        instance_discovery=False,
        timeout=TIMEOUT,
    )


def _assertion(
    credential: ClientCredential,
    *,
    audience: str,
    client_id: str = CLIENT_ID,
    key_pem: str | None = None,
    algorithm: str = "PS256",
    lifetime: int = 600,
) -> str:
    """Sign a client assertion the way msal does, with any part overridable."""
    cert = credential.certificate
    header = {
        "x5t#S256": jwt.utils.base64url_encode(cert.fingerprint(_sha256())).decode()
    }
    if algorithm == "RS256":
        header = {"x5t": jwt.utils.base64url_encode(cert.fingerprint(_sha1())).decode()}
    now = int(time.time())
    claims = {
        "aud": audience,
        "iss": client_id,
        "sub": client_id,
        "jti": str(uuid.uuid4()),
        "iat": now,
        "nbf": now,
        "exp": now + lifetime,
    }
    return jwt.encode(
        claims, key_pem or credential.key_pem, algorithm=algorithm, headers=header
    )


def _sha256():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA256()


def _sha1():  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives import hashes

    return hashes.SHA1()


def _post_token(
    idp: IdentityProvider,
    assertion: str,
    *,
    client_id: str = CLIENT_ID,
    scope: str = "https://graph/.default",
) -> requests.Response:
    return requests.post(
        idp.token_endpoint,
        data={
            "client_id": client_id,
            "grant_type": "client_credentials",
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            "scope": scope,
        },
        timeout=TIMEOUT,
    )


@pytest.fixture(scope="module")
def token(
    idp: IdentityProvider, client_credential: ClientCredential, graph: FakeGraph
) -> str:
    """Return a Graph access token obtained through msal."""
    result = _msal_app(idp, client_credential).acquire_token_for_client(
        [f"{graph.origin}/.default"]
    )
    return str(result["access_token"])


@pytest.fixture
def api(token: str, graph: FakeGraph, drive: FakeDrive) -> Iterator[requests.Session]:
    """Return a requests session that sends the bearer token."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {token}"
        yield session


def _item_url(graph: FakeGraph, drive: FakeDrive, path: str, action: str = "") -> str:
    encoded = "/".join(quote(segment, safe="") for segment in path.split("/"))
    return f"{graph.base_url}/drives/{drive.id}/root:/{encoded}" + (
        f":/{action}" if action else ""
    )


def _open_session(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive, path: str
) -> str:
    body = {"item": {"@microsoft.graph.conflictBehavior": "replace"}}
    response = api.post(
        _item_url(graph, drive, path, "createUploadSession"), json=body, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert response.json()["nextExpectedRanges"] == ["0-"]
    return str(response.json()["uploadUrl"])


def _put_chunk(
    url: str, data: bytes, first: int, total: int, **headers: str
) -> requests.Response:
    content_range = {"Content-Range": f"bytes {first}-{first + len(data) - 1}/{total}"}
    return requests.put(
        url, data=data, headers=content_range | headers, timeout=TIMEOUT
    )


# Identity provider.


def test_msal_gets_a_token_and_serves_the_next_from_its_cache(
    idp: IdentityProvider, client_credential: ClientCredential, drive: FakeDrive
) -> None:
    """Real msal obtains a valid token with a certificate; a second call makes no token request."""
    app = _msal_app(idp, client_credential)
    first = app.acquire_token_for_client(["https://graph.example/.default"])
    second = app.acquire_token_for_client(["https://graph.example/.default"])
    assert first["token_type"] == "Bearer"
    assert idp.is_valid(first["access_token"])
    assert second["access_token"] == first["access_token"]
    assert idp.token_requests == 1
    assert idp.scope_of(first["access_token"]) == "https://graph.example/.default"


@pytest.mark.parametrize(
    ("pkcs1", "passphrase"), [(True, None), (False, "s3cret"), (True, "s3cret")]
)
def test_msal_accepts_pkcs1_and_encrypted_keys(
    idp: IdentityProvider, pki: TestPKI, pkcs1: bool, passphrase: str | None
) -> None:
    """PKCS#1 and passphrase-protected keys made by the PKI load in msal and earn a token."""
    credential = pki.client_credential("other-app", pkcs1=pkcs1, passphrase=passphrase)
    marker = "BEGIN RSA PRIVATE KEY" if pkcs1 else "PRIVATE KEY"
    assert marker in credential.key_pem
    client_id = str(uuid.uuid4())
    idp.register_client(client_id, credential.cert_pem)
    result = _msal_app(idp, credential, client_id).acquire_token_for_client(
        ["https://g/.default"]
    )
    assert idp.is_valid(result["access_token"])


def test_assertion_signed_with_another_key_is_invalid_client(
    idp: IdentityProvider, pki: TestPKI, client_credential: ClientCredential
) -> None:
    """A registered thumbprint does not save an assertion whose signature is from another key."""
    intruder = pki.client_credential("intruder")
    assertion = _assertion(
        client_credential, audience=idp.token_endpoint, key_pem=intruder.key_pem
    )
    response = _post_token(idp, assertion)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_codes"] == [700027]


def test_certificate_not_registered_is_invalid_client(
    idp: IdentityProvider, pki: TestPKI, client_credential: ClientCredential
) -> None:
    """msal with a certificate the app does not hold gets Entra's error dict, not an exception."""
    stranger = pki.client_credential("stranger")
    result = _msal_app(idp, stranger).acquire_token_for_client(["https://g/.default"])
    assert result["error"] == "invalid_client"
    assert result["error_description"].startswith("AADSTS700027:")


def test_unregistered_client_id_is_refused(
    idp: IdentityProvider, client_credential: ClientCredential
) -> None:
    """An unknown application id is refused as Entra does: unauthorized_client, AADSTS700016."""
    other = "99999999-0000-0000-0000-000000000000"
    result = _msal_app(idp, client_credential, other).acquire_token_for_client(
        ["https://g/.default"]
    )
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]


def test_wrong_audience_is_invalid_client(
    idp: IdentityProvider, client_credential: ClientCredential
) -> None:
    """An assertion must name the token endpoint as its audience."""
    assertion = _assertion(
        client_credential,
        audience="https://login.microsoftonline.com/x/oauth2/v2.0/token",
    )
    response = _post_token(idp, assertion)
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_expired_assertion_is_invalid_client(
    idp: IdentityProvider, client_credential: ClientCredential
) -> None:
    """An assertion past its `exp` (beyond the clock leeway) is refused with AADSTS700024."""
    assertion = _assertion(
        client_credential, audience=idp.token_endpoint, lifetime=-600
    )
    response = _post_token(idp, assertion)
    assert response.json()["error"] == "invalid_client"
    assert response.json()["error_codes"] == [700024]


def test_rs256_assertion_with_sha1_thumbprint_is_accepted(
    idp: IdentityProvider, client_credential: ClientCredential
) -> None:
    """Older clients sign RS256 with an `x5t` SHA-1 thumbprint; Entra still accepts that."""
    assertion = _assertion(
        client_credential, audience=idp.token_endpoint, algorithm="RS256"
    )
    response = _post_token(idp, assertion)
    assert response.status_code == 200, response.text
    assert response.json()["token_type"] == "Bearer"
    assert idp.is_valid(response.json()["access_token"])


def test_scope_without_default_suffix_is_invalid_scope(
    idp: IdentityProvider, client_credential: ClientCredential
) -> None:
    """The client-credentials flow only takes `<resource>/.default` scopes."""
    assertion = _assertion(client_credential, audience=idp.token_endpoint)
    response = _post_token(idp, assertion, scope="https://graph/Files.ReadWrite.All")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_scope"


def test_outage_answers_503_on_the_token_endpoint_only(
    idp: IdentityProvider, client_credential: ClientCredential, drive: FakeDrive
) -> None:
    """During an outage the token endpoint answers 503 (counted); discovery keeps working."""
    idp.outage = True
    app = _msal_app(idp, client_credential)  # Discovery happens here and must succeed.
    with pytest.raises(msal.exceptions.MsalServiceError):
        app.acquire_token_for_client(["https://outage/.default"])
    assert idp.token_requests == 1
    idp.outage = False
    assert "access_token" in app.acquire_token_for_client(["https://outage/.default"])


# Graph: authentication and site resolution.


def test_graph_requires_a_valid_bearer_token(
    graph: FakeGraph, drive: FakeDrive
) -> None:
    """Requests without a token, or with one the IdP never issued, get 401 InvalidAuthenticationToken."""
    missing = requests.get(graph.site_url, timeout=TIMEOUT)
    forged = requests.get(
        graph.site_url, headers={"Authorization": "Bearer forged"}, timeout=TIMEOUT
    )
    for response in (missing, forged):
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert graph.count("site") == 2


def test_graph_resolves_site_and_libraries(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """The site resolves by `host:/path`; its default drive and drive list match the contract."""
    site = api.get(
        f"{graph.base_url}/sites/contoso.sharepoint.com:/sites/mirror", timeout=TIMEOUT
    ).json()
    assert site["webUrl"] == "https://contoso.sharepoint.com/sites/mirror"
    default = api.get(
        f"{graph.base_url}/sites/{site['id']}/drive", timeout=TIMEOUT
    ).json()
    assert (default["id"], default["name"]) == (drive.id, "Documents")
    assert default["webUrl"].endswith("/Shared%20Documents")
    drives = api.get(
        f"{graph.base_url}/sites/{site['id']}/drives", timeout=TIMEOUT
    ).json()["value"]
    assert [d["name"] for d in drives] == ["Documents", "Archiv"]
    assert graph.drive("Shared Documents") is drive
    assert (graph.count("site"), graph.count("drive"), graph.count("drives")) == (
        1,
        1,
        1,
    )


# Graph: items and names.


def test_simple_upload_needs_an_existing_parent(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """A PUT below a missing folder answers 404 itemNotFound; after creating the folder it works."""
    response = api.put(
        _item_url(graph, drive, "dossier/a.txt", "content"), data=b"a", timeout=TIMEOUT
    )
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "itemNotFound"
    folder = {
        "name": "dossier",
        "folder": {},
        "@microsoft.graph.conflictBehavior": "fail",
    }
    assert (
        api.post(
            f"{graph.base_url}/drives/{drive.id}/root/children",
            json=folder,
            timeout=TIMEOUT,
        ).status_code
        == 201
    )
    again = api.post(
        f"{graph.base_url}/drives/{drive.id}/root/children",
        json=folder,
        timeout=TIMEOUT,
    )
    assert again.status_code == 409
    assert again.json()["error"]["code"] == "nameAlreadyExists"
    created = api.put(
        _item_url(graph, drive, "dossier/a.txt", "content"), data=b"a", timeout=TIMEOUT
    )
    assert created.status_code == 201
    assert created.json()["size"] == 1
    assert drive.files() == {"dossier/a.txt": b"a"}


@pytest.mark.parametrize(
    "name",
    [
        "CON",
        "a:b.txt",
        "trailing.",
        " lead",
        "~$lock.docx",
        "x_vti_y",
        "desktop.ini",
        "q?.txt",
    ],
)
def test_forbidden_names_are_refused(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive, name: str
) -> None:
    """Names SharePoint cannot hold answer 400 invalidRequest and store nothing."""
    response = api.put(
        _item_url(graph, drive, name, "content"), data=b"x", timeout=TIMEOUT
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalidRequest"
    assert drive.files() == {}


def test_names_are_case_insensitive_and_keep_the_first_spelling(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """`Report.PDF` and `report.pdf` are one item: the second write replaces and counts a version."""
    assert (
        api.put(
            _item_url(graph, drive, "Report.PDF", "content"), data=b"1", timeout=TIMEOUT
        ).status_code
        == 201
    )
    assert (
        api.put(
            _item_url(graph, drive, "report.pdf", "content"), data=b"2", timeout=TIMEOUT
        ).status_code
        == 200
    )
    assert drive.files() == {"Report.PDF": b"2"}
    assert drive.versions("REPORT.pdf") == 2


def test_path_segments_are_decoded_once(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """`#`, `%`, `+`, spaces and non-ASCII survive one round of percent-encoding."""
    drive.mkdir("Rapports été")
    name = "50% #1 + plus.txt"
    response = api.put(
        _item_url(graph, drive, f"Rapports été/{name}", "content"),
        data=b"x",
        timeout=TIMEOUT,
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == name
    assert drive.get(f"rapports ÉTÉ/{name}") == b"x"
    assert (
        api.get(
            _item_url(graph, drive, f"Rapports été/{name}"), timeout=TIMEOUT
        ).json()["size"]
        == 1
    )


def test_delete_answers_204_404_and_423(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """DELETE removes a folder with its contents; a missing item is 404; a locked one 423."""
    drive.put("a/b/c.txt", b"c")
    drive.put("locked.txt", b"l")
    drive.lock("locked.txt")
    assert api.delete(_item_url(graph, drive, "A"), timeout=TIMEOUT).status_code == 204
    assert drive.folders() == set()
    gone = api.delete(_item_url(graph, drive, "a"), timeout=TIMEOUT)
    assert (gone.status_code, gone.json()["error"]["code"]) == (404, "itemNotFound")
    assert (
        api.delete(_item_url(graph, drive, "locked.txt"), timeout=TIMEOUT).status_code
        == 423
    )
    drive.unlock("locked.txt")
    assert (
        api.delete(_item_url(graph, drive, "locked.txt"), timeout=TIMEOUT).status_code
        == 204
    )
    assert drive.recycled() == ["a", "locked.txt"]


def test_children_are_paged_with_next_links(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """Listing follows `@odata.nextLink` pages until none is left."""
    for index in range(5):
        drive.put(f"many/file{index}.txt", b"x")
    graph.page_size = 2
    url: str | None = _item_url(graph, drive, "many", "children")
    names: list[str] = []
    while url:
        page = api.get(url, timeout=TIMEOUT).json()
        names += [item["name"] for item in page["value"]]
        url = page.get("@odata.nextLink")
    assert names == [f"file{index}.txt" for index in range(5)]
    assert graph.count("children") == 3


# Graph: upload sessions.


def test_upload_session_in_chunks(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """Aligned chunks in order answer 202 with the next range, then 201 with the item."""
    data = bytes(range(256)) * (CHUNK_MULTIPLE * 3 // 256) + b"tail"
    url = _open_session(api, graph, drive, "big.bin")
    step = CHUNK_MULTIPLE * 2
    first = _put_chunk(url, data[:step], 0, len(data))
    assert (first.status_code, first.json()["nextExpectedRanges"]) == (
        202,
        [f"{step}-"],
    )
    status = requests.get(url, timeout=TIMEOUT).json()
    assert status["nextExpectedRanges"] == [f"{step}-"]
    last = _put_chunk(url, data[step:], step, len(data))
    assert last.status_code == 201
    assert drive.get("big.bin") == data
    assert requests.get(url, timeout=TIMEOUT).status_code == 404


def test_upload_url_refuses_an_authorization_header(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive, token: str
) -> None:
    """Sending the bearer token to `uploadUrl` is refused with 401, unless allowed (rclone mode)."""
    url = _open_session(api, graph, drive, "auth.bin")
    refused = _put_chunk(url, b"abc", 0, 3, Authorization=f"Bearer {token}")
    assert refused.status_code == 401
    graph.allow_auth_on_upload_url = True
    assert (
        _put_chunk(url, b"abc", 0, 3, Authorization=f"Bearer {token}").status_code
        == 201
    )


def test_misaligned_and_out_of_order_chunks_are_refused(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """A non-final chunk off the 320 KiB grid is 400; a chunk not at the expected offset is 416."""
    total = CHUNK_MULTIPLE * 3
    url = _open_session(api, graph, drive, "grid.bin")
    assert _put_chunk(url, b"x" * 1000, 0, total).status_code == 400
    assert (
        _put_chunk(url, b"x" * CHUNK_MULTIPLE, CHUNK_MULTIPLE, total).status_code == 416
    )
    assert _put_chunk(url, b"x" * CHUNK_MULTIPLE, 0, total).status_code == 202


def test_create_session_needs_an_existing_parent(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """createUploadSession below a missing folder answers 404 itemNotFound."""
    response = api.post(
        _item_url(graph, drive, "nowhere/x.bin", "createUploadSession"),
        json={},
        timeout=TIMEOUT,
    )
    assert (response.status_code, response.json()["error"]["code"]) == (
        404,
        "itemNotFound",
    )


def test_dropped_chunk_leaves_the_session_resumable(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """A connection cut mid-chunk raises in the client; the session still expects that offset."""
    url = _open_session(api, graph, drive, "resume.bin")
    graph.drop_next("upload_chunk")
    chunk = b"y" * (CHUNK_MULTIPLE * 8)
    with pytest.raises(requests.ConnectionError):
        _put_chunk(url, chunk, 0, len(chunk))
    assert requests.get(url, timeout=TIMEOUT).json()["nextExpectedRanges"] == ["0-"]
    assert _put_chunk(url, chunk, 0, len(chunk)).status_code == 201
    assert drive.versions("resume.bin") == 1


# Graph: faults.


def test_fail_next_answers_once_with_retry_after(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """An injected 429 carries Retry-After and a Graph error body, and is consumed by one request."""
    graph.fail_next("content", 429, retry_after="7")
    url = _item_url(graph, drive, "t.txt", "content")
    throttled = api.put(url, data=b"t", timeout=TIMEOUT)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"]["code"] == "activityLimitReached"
    assert drive.files() == {}
    assert api.put(url, data=b"t", timeout=TIMEOUT).status_code == 201
    assert graph.count("content", "PUT") == 2


def test_down_refuses_connections_until_up(
    api: requests.Session, graph: FakeGraph, drive: FakeDrive
) -> None:
    """While down, clients get connection errors; after `up()` the same URLs work again."""
    graph.down()
    with pytest.raises(requests.ConnectionError):
        api.get(graph.site_url, timeout=TIMEOUT)
    graph.up()
    assert api.get(graph.site_url, timeout=TIMEOUT).status_code == 200


# S3.


def test_minio_round_trip(minio_client: minio.Minio, bucket: str, s3: S3Server) -> None:
    """The minio SDK writes, stats and reads an object from the moto S3 server, and is counted."""
    minio_client.put_object(bucket, "dossier/rapport 2025.pdf", io.BytesIO(b"%PDF"), 4)
    assert minio_client.stat_object(bucket, "dossier/rapport 2025.pdf").size == 4
    with minio_client.get_object(bucket, "dossier/rapport 2025.pdf") as response:
        assert response.read() == b"%PDF"
    assert s3.count("PUT") == 1
    assert ("GET", f"/{bucket}/dossier/rapport 2025.pdf") in s3.requests
