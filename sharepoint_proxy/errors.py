"""Define the one exception tree of sharepoint-proxy and the HTTP status each maps to.

::

    ProxyError
    ├── ConfigError                 bad settings: the process stops at start
    ├── RequestError                a webhook request we refuse; nothing changes
    │   ├── UnauthenticatedError    401  no credentials at all
    │   ├── ForbiddenError          403  wrong bearer token or signature
    │   ├── PayloadTooLargeError    413  body over 1 MiB
    │   └── BadPayloadError         400  not a MinIO notification
    ├── TransientError              may succeed later (network, 5xx, 423): retried,
    │   ├── ThrottledError          429/503 with Retry-After   then 202 (journaled)
    │   ├── TokenRefusedError       the identity provider refused a token (error, AADSTS codes)
    │   ├── SourceChangedError      the object changed between stat and read: stat again
    │   └── UploadSessionLostError  Graph dropped the upload session: read the object again
    ├── PermanentError              can never succeed (bad name, 403, 507): 200, outcome
    │                               "failed", kept as a dead letter
    └── JournalError                503  the event could not be written down

Third-party errors (requests, minio, msal) are translated into these at the adapter that
met them, with ``raise ... from exc``; nothing above the adapters sees them.
"""

from __future__ import annotations


class ProxyError(Exception):
    """Base of every error sharepoint-proxy raises on purpose."""


class ConfigError(ProxyError):
    """Settings are missing or invalid; `problems` names every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("invalid configuration:\n  " + "\n  ".join(self.problems))


class RequestError(ProxyError):
    """A webhook request that is refused before any work starts."""

    status = 400
    reason = "bad_request"

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class UnauthenticatedError(RequestError):
    """The request carries neither a bearer token nor a signature."""

    status = 401
    reason = "unauthenticated"


class ForbiddenError(RequestError):
    """The bearer token or the signature is wrong."""

    status = 403
    reason = "forbidden"


class PayloadTooLargeError(RequestError):
    """The body is larger than a MinIO notification can be."""

    status = 413
    reason = "payload_too_large"


class BadPayloadError(RequestError):
    """The body is not a MinIO notification."""

    status = 400
    reason = "bad_payload"


class TransientError(ProxyError):
    """An operation failed in a way that may succeed if tried again later."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        self.retry_after = retry_after
        super().__init__(message)


class ThrottledError(TransientError):
    """Graph asked us to slow down (429, or 503 with Retry-After)."""


class TokenRefusedError(TransientError):
    """The identity provider answered a token request with an error.

    Transient for events (the operator fixes the registration; nothing is dropped), and
    specific enough for `check` to say what to fix: `error` is the OAuth error and
    `codes` Entra's AADSTS numbers.
    """

    def __init__(self, error: str, codes: tuple[int, ...], description: str) -> None:
        self.error = error
        self.codes = codes
        super().__init__(f"identity provider refused a token: {error} {description}".strip())


class SourceChangedError(TransientError):
    """The object in MinIO changed between the stat and the read; stat it again."""


class UploadSessionLostError(TransientError):
    """Graph no longer knows the upload session; the upload must start over from the source."""


class PermanentError(ProxyError):
    """An operation that can never succeed as asked; `reason` is machine-readable."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)


class JournalError(ProxyError):
    """The durable journal could not be written (disk full, state dir unwritable)."""
