"""Webhook authentication on the raw body."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from sharepoint_proxy.auth import authenticate
from sharepoint_proxy.errors import ForbiddenError, UnauthenticatedError

SECRET = "s3cr3t-token-value"
BODY = b'{"Records": []}'


def sign(body: bytes, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": f"Bearer {SECRET}"},
        {"Authorization": f"bearer {SECRET}"},
        {"X-Minio-Signature": sign(BODY)},
        {"X-Minio-Signature": "sha256=" + sign(BODY)},
        {"X-Minio-Signature": sign(BODY).upper()},
        {"Authorization": "Bearer wrong", "X-Minio-Signature": sign(BODY)},
    ],
)
def test_accepts_the_bearer_token_or_a_valid_signature(headers: dict[str, str]) -> None:
    """What MinIO sends (Bearer) and what signing relays send (HMAC) are both accepted."""
    authenticate(headers, BODY, secret=SECRET)


def test_no_credentials_is_unauthenticated() -> None:
    """A request with neither header is a 401, not a 403."""
    with pytest.raises(UnauthenticatedError):
        authenticate({}, BODY, secret=SECRET)


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Bearer wrong"},
        {"Authorization": SECRET},
        {"Authorization": f"Basic {SECRET}"},
        {"Authorization": f"Bearer {SECRET}x"},
        {"X-Minio-Signature": sign(BODY + b" ")},
        {"X-Minio-Signature": sign(BODY, "other")},
        {"X-Minio-Signature": "not hex at all ü"},
        {"Authorization": "Bearer ü"},
    ],
)
def test_wrong_credentials_are_forbidden(headers: dict[str, str]) -> None:
    """A wrong token, wrong scheme or a signature over other bytes is refused with 403."""
    with pytest.raises(ForbiddenError):
        authenticate(headers, BODY, secret=SECRET)
