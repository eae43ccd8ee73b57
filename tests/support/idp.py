"""Stand in for Entra ID's client-credentials flow with a certificate, over HTTPS.

Good enough for the real `msal.ConfidentialClientApplication`: it serves
`/{tenant}/v2.0/.well-known/openid-configuration` and `POST /{tenant}/oauth2/v2.0/token`,
verifies the client assertion as Entra does (registered client, certificate thumbprint in
the JWT header, signature, audience, issuer/subject, time window) and answers errors in
Entra's shape, which msal hands back to its caller as a dict instead of raising.
"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes

from tests.support.httpserver import JSONHandler, ServerRunner, Service
from tests.support.tls import TestPKI

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLOCK_LEEWAY_SECONDS = 60


@dataclass(frozen=True)
class _Token:
    client_id: str
    scope: str
    expires_at: float


@dataclass(frozen=True)
class _Certificate:
    sha256: str  # base64url, unpadded, as in the `x5t#S256` header
    sha1: str  # base64url, unpadded, as in the `x5t` header
    public_key: Any


class TokenError(Exception):
    """Carry one Entra error answer: HTTP status, OAuth error, AADSTS code and text."""

    def __init__(self, status: int, error: str, code: int, description: str) -> None:
        """Describe the refusal the token endpoint sends back."""
        super().__init__(f"{error}: AADSTS{code}: {description}")
        self.status = status
        self.error = error
        self.code = code
        self.description = description

    def payload(self) -> dict[str, object]:
        """Return the JSON body Entra answers with."""
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description}",
            "error_codes": [self.code],
            "timestamp": time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime()),
            "trace_id": secrets.token_hex(16),
            "correlation_id": secrets.token_hex(16),
        }


class IdentityProvider(Service):
    """Serve one Entra ID tenant on 127.0.0.1 over HTTPS and issue opaque access tokens."""

    def __init__(self, pki: TestPKI, *, tenant_id: str = "test-tenant") -> None:
        """Prepare the tenant; call `start()` (or use `with`) to listen."""
        self.tenant_id = tenant_id
        self.token_lifetime = 3600
        self.outage = False
        # msal caches a 5xx answer for Retry-After seconds (5 when absent); "0" lets a test
        # end the outage and see the very next request succeed.
        self.outage_retry_after: str | None = "0"
        self._lock = threading.Lock()
        self._clients: dict[str, list[_Certificate]] = {}
        self._tokens: dict[str, _Token] = {}
        self._token_requests = 0
        self._runner = ServerRunner(
            _Handler, pki.ssl_context(["127.0.0.1", "localhost"]), self
        )

    def start(self) -> None:
        """Listen on a free port of 127.0.0.1."""
        self._runner.start()

    def stop(self) -> None:
        """Stop listening and close open connections."""
        self._runner.stop()


    @property
    def base_url(self) -> str:
        """Return `https://127.0.0.1:<port>`."""
        return f"https://127.0.0.1:{self._runner.port}"

    @property
    def authority(self) -> str:
        """Return the authority URL to give msal: `https://127.0.0.1:<port>/<tenant>`."""
        return f"{self.base_url}/{self.tenant_id}"

    @property
    def token_endpoint(self) -> str:
        """Return the token endpoint URL, which is also the audience assertions must carry."""
        return f"{self.authority}/oauth2/v2.0/token"

    def register_client(self, client_id: str, cert_pem: str) -> None:
        """Register `cert_pem` as a credential of app `client_id` (an app may hold several)."""
        cert = x509.load_pem_x509_certificate(cert_pem.encode())
        registered = _Certificate(
            sha256=_b64url(cert.fingerprint(hashes.SHA256())),
            sha1=_b64url(cert.fingerprint(hashes.SHA1())),
            public_key=cert.public_key(),
        )
        with self._lock:
            self._clients.setdefault(client_id, []).append(registered)

    def unregister_client(self, client_id: str) -> None:
        """Forget app `client_id` and all its certificates."""
        with self._lock:
            self._clients.pop(client_id, None)

    @property
    def token_requests(self) -> int:
        """Return how many token requests arrived, answered or refused."""
        with self._lock:
            return self._token_requests

    @property
    def issued(self) -> set[str]:
        """Return every access token issued so far, expired ones included."""
        with self._lock:
            return set(self._tokens)

    def is_valid(self, token: str) -> bool:
        """Tell whether `token` was issued here and has not expired."""
        with self._lock:
            issued = self._tokens.get(token)
        return issued is not None and issued.expires_at > time.time()

    def scope_of(self, token: str) -> str | None:
        """Return the scope `token` was issued for, or None for an unknown token."""
        with self._lock:
            issued = self._tokens.get(token)
        return issued.scope if issued else None

    def expire_tokens(self) -> None:
        """Make every token issued so far expire now (clients will see 401 from Graph)."""
        with self._lock:
            self._tokens = {
                token: _Token(info.client_id, info.scope, 0.0)
                for token, info in self._tokens.items()
            }

    def reset(self) -> None:
        """End an outage, restore the default lifetime and zero the request counter."""
        with self._lock:
            self.outage = False
            self.token_lifetime = 3600
            self._token_requests = 0

    def _count_request(self) -> None:
        with self._lock:
            self._token_requests += 1

    def _openid_configuration(self) -> dict[str, object]:
        base = self.authority
        return {
            "token_endpoint": self.token_endpoint,
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{base}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": [
                "code",
                "id_token",
                "code id_token",
                "id_token token",
            ],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{base}/v2.0",
            "request_uri_parameter_supported": False,
            "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU",
        }

    def _issue(self, form: dict[str, str]) -> dict[str, object]:
        """Check one token request and return the token answer, or raise TokenError."""
        if form.get("grant_type") != "client_credentials":
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{form.get('grant_type')}'.",
            )
        assertion = form.get("client_assertion")
        if not assertion:
            raise TokenError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: "
                "'client_assertion' or 'client_secret'.",
            )
        if form.get("client_assertion_type") != ASSERTION_TYPE:
            raise TokenError(
                400,
                "invalid_request",
                7000216,
                "'client_assertion', 'client_secret' or 'request' is required "
                "for the 'client_credentials' grant type.",
            )
        client_id = form.get("client_id") or _unverified_issuer(assertion)
        with self._lock:
            certificates = list(self._clients.get(client_id or "", []))
        if not certificates:
            # Entra answers an unknown application id with unauthorized_client (AADSTS700016).
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory "
                f"'{self.tenant_id}'.",
            )
        claims = self._verify_assertion(assertion, client_id or "", certificates)
        scope = form.get("scope", "")
        if len(scope.split()) != 1 or not scope.endswith("/.default"):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows "
                "must have a scope value with /.default suffixed to the resource identifier "
                "(application ID URI).",
            )
        token = secrets.token_urlsafe(48)
        with self._lock:
            lifetime = self.token_lifetime
            self._tokens[token] = _Token(
                str(claims["iss"]), scope, time.time() + lifetime
            )
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }

    def _verify_assertion(
        self, assertion: str, client_id: str, certificates: list[_Certificate]
    ) -> dict[str, Any]:
        """Return the assertion's claims when it is valid for `client_id`, else raise TokenError."""
        try:
            header = jwt.get_unverified_header(assertion)
        except jwt.PyJWTError as exc:
            raise TokenError(
                400,
                "invalid_request",
                50027,
                f"JWT token is invalid or malformed. ({exc})",
            ) from exc
        # RFC 7515 wants unpadded base64url; msal pads. Entra accepts both.
        thumbprint_256 = str(header.get("x5t#S256") or "").rstrip("=")
        thumbprint_1 = str(header.get("x5t") or "").rstrip("=")
        certificate = next(
            (
                cert
                for cert in certificates
                if (thumbprint_256 and cert.sha256 == thumbprint_256)
                or (not thumbprint_256 and thumbprint_1 and cert.sha1 == thumbprint_1)
            ),
            None,
        )
        if certificate is None:
            raise TokenError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation. [Reason - The key was not "
                f"found., Thumbprint of key used by client: '{thumbprint_256 or thumbprint_1}']",
            )
        try:
            claims: dict[str, Any] = jwt.decode(
                assertion,
                certificate.public_key,
                algorithms=["PS256", "RS256"],
                audience=self.token_endpoint,
                leeway=CLOCK_LEEWAY_SECONDS,
                options={"require": ["aud", "iss", "sub", "exp"]},
            )
        except jwt.InvalidSignatureError as exc:
            raise TokenError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation. [Reason - The provided "
                "signature value did not match the expected signature value.]",
            ) from exc
        except jwt.InvalidAudienceError as exc:
            raise TokenError(
                401,
                "invalid_client",
                700027,
                "Client assertion failed signature validation. [Reason - The audience of "
                f"the assertion is not '{self.token_endpoint}'.]",
            ) from exc
        except (jwt.ExpiredSignatureError, jwt.ImmatureSignatureError) as exc:
            raise TokenError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            ) from exc
        except jwt.PyJWTError as exc:
            raise TokenError(
                401,
                "invalid_client",
                50027,
                f"JWT token is invalid or malformed. ({exc})",
            ) from exc
        iat = claims.get("iat")
        if isinstance(iat, (int, float)) and iat > time.time() + CLOCK_LEEWAY_SECONDS:
            raise TokenError(
                401,
                "invalid_client",
                700024,
                "Client assertion is not within its valid time range.",
            )
        if claims.get("iss") != client_id or claims.get("sub") != client_id:
            raise TokenError(
                401,
                "invalid_client",
                700021,
                "Client assertion application identifier doesn't match 'client_id' parameter.",
            )
        return claims


class _Handler(JSONHandler):
    @property
    def idp(self) -> IdentityProvider:
        app = self.server.app
        assert isinstance(app, IdentityProvider)
        return app

    def do_GET(self) -> None:
        """Serve the tenant's OpenID configuration."""
        idp = self.idp
        path = urlsplit(self.path).path
        if path == f"/{idp.tenant_id}/v2.0/.well-known/openid-configuration":
            self.send_json(200, idp._openid_configuration())
        elif path.endswith("/v2.0/.well-known/openid-configuration"):
            error = TokenError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{path.split('/')[1]}' not found.",
            )
            self.send_json(400, error.payload())
        else:
            self.send_json(404, {"error": "not_found"})

    def do_POST(self) -> None:
        """Answer the token endpoint."""
        idp = self.idp
        body = self.read_body(limit=1024 * 1024)
        if urlsplit(self.path).path != f"/{idp.tenant_id}/oauth2/v2.0/token":
            self.send_json(404, {"error": "not_found"})
            return
        idp._count_request()
        if idp.outage:
            headers = (
                {"Retry-After": idp.outage_retry_after}
                if idp.outage_retry_after
                else {}
            )
            error = TokenError(
                503, "temporarily_unavailable", 90033, "Service unavailable."
            )
            self.send_json(503, error.payload(), headers)
            return
        form = {key: values[0] for key, values in parse_qs(body.decode()).items()}
        try:
            answer = idp._issue(form)
        except TokenError as error:
            self.send_json(error.status, error.payload())
            return
        self.send_json(
            200, answer, {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"}
        )


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _unverified_issuer(assertion: str) -> str | None:
    try:
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError:
        return None
    issuer = claims.get("iss")
    return issuer if isinstance(issuer, str) else None
