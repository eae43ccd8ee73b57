"""Authenticate a webhook request on its raw body, in constant time."""

from __future__ import annotations

import hashlib
import hmac
from typing import Protocol

from .errors import ForbiddenError, UnauthenticatedError


class Headers(Protocol):
    """Request headers: a dict, or the web framework's case-insensitive headers."""

    def get(self, key: str, /) -> str | None:
        """Return the header's value, or None."""
        ...


def authenticate(headers: Headers, body: bytes, *, secret: str) -> None:
    """Accept the request if it carries the bearer token or a valid HMAC signature; else raise.

    MinIO sends `Authorization: Bearer <secret>`; relays that sign send
    `X-Minio-Signature: [sha256=]<hex HMAC-SHA256(secret, body)>`. Either one suffices.
    """
    authorization = headers.get("Authorization")
    signature = headers.get("X-Minio-Signature")
    if not authorization and not signature:
        raise UnauthenticatedError("missing Authorization or X-Minio-Signature header")
    key = secret.encode()
    if authorization and _bearer_matches(authorization, key):
        return
    if signature and _signature_matches(signature, body, key):
        return
    raise ForbiddenError("wrong bearer token or signature")


def _bearer_matches(authorization: str, key: bytes) -> bool:
    scheme, _, token = authorization.strip().partition(" ")
    # compare_digest runs whatever the scheme, so a wrong scheme costs the same time.
    matches = hmac.compare_digest(token.strip().encode("utf-8", "replace"), key)
    return matches and scheme.lower() == "bearer"


def _signature_matches(signature: str, body: bytes, key: bytes) -> bool:
    given = signature.strip().lower().removeprefix("sha256=")
    expected = hmac.new(key, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(given.encode("utf-8", "replace"), expected.encode())
