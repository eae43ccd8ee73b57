"""Get Graph access tokens with one MSAL confidential client per process."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import msal
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization

from .config import Config
from .errors import ConfigError, TokenRefusedError, TransientError

log = logging.getLogger(__name__)

MSAL_TIMEOUT_SECONDS = 15
TOKEN_REFRESH_MARGIN_SECONDS = 300.0


class TokenSource(Protocol):
    """What the Graph client needs: a bearer token, and a way to drop a refused one."""

    def token(self) -> str:
        """Return a valid access token for Graph."""
        ...

    def invalidate(self) -> None:
        """Forget cached tokens, so the next call asks the identity provider."""
        ...


@dataclass(frozen=True)
class CertificateCredential:
    """A certificate and its private key, read and checked to belong together."""

    certificate_pem: str
    private_key_pem: str = field(repr=False)
    passphrase: str | None = field(default=None, repr=False)
    thumbprint_sha256: str = ""

    @classmethod
    def load(cls, cert_path: Path, key_path: Path, passphrase: str | None) -> CertificateCredential:
        """Read the PEM files; raise ConfigError saying what to fix if they are unusable."""
        try:
            cert_pem = cert_path.read_text(encoding="ascii")
            certificate = x509.load_pem_x509_certificate(cert_pem.encode())
        except (OSError, ValueError) as exc:
            raise ConfigError([f"CERT_PATH: cannot read a PEM certificate from {cert_path} ({exc})"]) from exc
        try:
            key_pem = key_path.read_text(encoding="ascii")
        except (OSError, ValueError) as exc:
            raise ConfigError([f"KEY_PATH: cannot read {key_path} ({exc})"]) from exc
        try:
            key = serialization.load_pem_private_key(
                key_pem.encode(), password=passphrase.encode() if passphrase else None
            )
        except TypeError as exc:
            hint = (
                "KEY_PASSPHRASE: the key is encrypted; set its passphrase"
                if not passphrase
                else "KEY_PASSPHRASE: given, but the key is not encrypted; remove it"
            )
            raise ConfigError([hint]) from exc
        except ValueError as exc:
            problem = (
                "KEY_PASSPHRASE: wrong passphrase for the key (or the key is damaged)"
                if passphrase
                else f"KEY_PATH: {key_path} is not a PEM private key (PKCS#8 or PKCS#1)"
            )
            raise ConfigError([problem]) from exc
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        encoding = serialization.Encoding.PEM
        if key.public_key().public_bytes(encoding, public) != certificate.public_key().public_bytes(
            encoding, public
        ):
            raise ConfigError(
                [f"CERT_PATH/KEY_PATH: the certificate {cert_path} does not match the key {key_path}"]
            )

        return cls(
            certificate_pem=cert_pem,
            private_key_pem=key_pem,
            passphrase=passphrase,
            thumbprint_sha256=certificate.fingerprint(hashes.SHA256()).hex().upper(),
        )


class TokenProvider:
    """Serve Graph tokens from one reused MSAL ConfidentialClientApplication.

    The MSAL client is built on first use, not at construction: it fetches the authority's
    OpenID configuration, and a process should start even while the authority is away.
    """

    def __init__(
        self,
        config: Config,
        *,
        credential: CertificateCredential | None = None,
    ) -> None:
        self._credential = credential or CertificateCredential.load(
            config.cert_path, config.key_path, config.key_passphrase
        )
        self._client_id = config.client_id
        self._authority = config.authority
        self._scopes = [config.graph_scope]
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = threading.Lock()
        self._cached: tuple[str, float] | None = None  # (token, monotonic time to stop using it)

    def _application(self) -> msal.ConfidentialClientApplication:
        with self._lock:
            if self._app is None:
                credential: dict[str, Any] = {
                    "private_key": self._credential.private_key_pem,
                    "public_certificate": self._credential.certificate_pem,
                }
                if self._credential.passphrase:
                    credential["passphrase"] = self._credential.passphrase
                try:
                    self._app = msal.ConfidentialClientApplication(
                        self._client_id,
                        authority=self._authority,
                        client_credential=credential,
                        instance_discovery=False,
                        timeout=MSAL_TIMEOUT_SECONDS,
                    )
                except (ValueError, requests.RequestException) as exc:
                    raise TransientError(
                        f"identity provider {self._authority} unreachable: {type(exc).__name__}"
                    ) from exc
            return self._app

    def token(self) -> str:
        """Return an access token for Graph: ours while it is fresh, else MSAL's (cache or a request).

        Keeping the token here saves MSAL's cache search on every Graph request; MSAL is
        asked again `TOKEN_REFRESH_MARGIN_SECONDS` before the token expires.
        """
        cached = self._cached
        if cached is not None and time.monotonic() < cached[1]:
            return cached[0]
        app = self._application()
        try:
            result = app.acquire_token_for_client(scopes=self._scopes)
        except (ValueError, requests.RequestException) as exc:
            raise TransientError(f"token request failed: {type(exc).__name__}") from exc
        token = result.get("access_token")
        if not token:
            error = str(result.get("error", "unknown_error"))
            description = str(result.get("error_description", "")).split("\n", 1)[0]
            codes = tuple(c for c in result.get("error_codes", []) if isinstance(c, int))
            log.error("token.refused", extra={"error": error, "error_codes": codes})
            raise TokenRefusedError(error, codes, description)
        lifetime = float(result.get("expires_in") or 0)
        self._cached = (str(token), time.monotonic() + max(0.0, lifetime - TOKEN_REFRESH_MARGIN_SECONDS))
        return str(token)

    def close(self) -> None:
        """Close MSAL's pooled connections to the identity provider, if it was used."""
        if self._app is not None:
            self._app.http_client.close()

    def invalidate(self) -> None:
        """Drop cached access tokens, so the next `token()` asks the identity provider."""
        self._cached = None
        app = self._app
        if app is None:
            return
        cache = app.token_cache
        for item in list(cache.search(msal.TokenCache.CredentialType.ACCESS_TOKEN)):
            cache.remove_at(item)
