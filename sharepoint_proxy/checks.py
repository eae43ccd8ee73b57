"""Check a deployment end to end: settings, certificate and key, token, library, MinIO and buckets.

Each check returns a `CheckResult` that says what it found and, when it failed, what to fix.
`run_checks` runs them in order and skips those whose prerequisite failed (no token without
a usable key, no library without a token).
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from minio import Minio
from minio.error import MinioException, S3Error
from urllib3.exceptions import HTTPError as Urllib3Error

from .config import Config
from .errors import ConfigError, PermanentError, ProxyError, TokenRefusedError, TransientError
from .graph import GraphClient
from .minio_source import DENIED_CODES, MinioSource
from .startup import site_fix
from .tokens import CertificateCredential, TokenProvider

# Checks answer within seconds: a short retry budget instead of the service's 30 s.
CHECK_RETRY_BUDGET_SECONDS = 5.0
EXPIRY_WARNING_DAYS = 30


@dataclass(frozen=True)
class CheckResult:
    """One line of `check`: what was checked, whether it passed, what was found, what to fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""
    skipped: bool = False
    problems: tuple[str, ...] = ()  # one line each, printed under the result


def check_settings(environ: Mapping[str, str]) -> tuple[CheckResult, Config | None]:
    """Read the configuration; on failure name every bad variable."""
    try:
        config = Config.from_env(environ)
    except ConfigError as exc:
        result = CheckResult(
            "settings",
            False,
            f"{len(exc.problems)} problem(s):",
            "set or correct the variables named above",
            problems=tuple(exc.problems),
        )
        return result, None
    library = config.document_library or "the site's default library"
    detail = f"site {config.site_path}, {library}, MinIO {config.minio_endpoint}"
    return CheckResult("settings", True, detail), config


def check_certificate(
    config: Config, *, now: datetime.datetime | None = None
) -> tuple[CheckResult, CertificateCredential | None]:
    """Load the certificate and key, check they match and the certificate is in date; give its thumbprints."""
    try:
        credential = CertificateCredential.load(config.cert_path, config.key_path, config.key_passphrase)
    except ConfigError as exc:
        fix = _certificate_fix(exc.problems)
        return CheckResult("certificate", False, "; ".join(exc.problems), fix), None
    certificate = x509.load_pem_x509_certificate(credential.certificate_pem.encode())
    now = now or datetime.datetime.now(datetime.UTC)
    expires = certificate.not_valid_after_utc
    sha1 = certificate.fingerprint(hashes.SHA1()).hex().upper()  # noqa: S303 - Entra's thumbprint, not security
    identity = (
        f"{certificate.subject.rfc4514_string()}, thumbprint (SHA-1, as Entra lists it) {sha1}, "
        f"SHA-256 {credential.thumbprint_sha256}"
    )
    if expires <= now or certificate.not_valid_before_utc > now:
        window = f"valid {certificate.not_valid_before_utc:%Y-%m-%d} to {expires:%Y-%m-%d}"
        return CheckResult(
            "certificate",
            False,
            f"{identity}: not valid now ({window})",
            "make a new certificate (certs/README.md), upload it to the app registration, "
            "and point CERT_PATH and KEY_PATH at it",
        ), None
    days = (expires - now).days
    soon = f" (renew: {days} days left)" if days < EXPIRY_WARNING_DAYS else ""
    detail = f"{identity}, expires {expires:%Y-%m-%d}{soon}; key matches"
    return CheckResult("certificate", True, detail), credential


def check_token(config: Config, tokens: TokenProvider) -> CheckResult:
    """Ask the identity provider for a Graph token."""
    try:
        tokens.token()
    except ProxyError as exc:
        return CheckResult("token", False, str(exc), _token_fix(exc, config))
    return CheckResult("token", True, f"got a token for {config.graph_scope} from {config.authority}")


def check_library(config: Config, graph: GraphClient) -> CheckResult:
    """Resolve the site and the library; print the drive's id, name and URL."""
    try:
        drive = graph.resolve_drive()
    except ConfigError as exc:
        return CheckResult(
            "library",
            False,
            "; ".join(exc.problems),
            "set DOCUMENT_LIBRARY to one of the libraries listed (its name, URL name or id), "
            "or leave it empty for the site's default library",
        )
    except PermanentError as exc:
        return CheckResult("library", False, str(exc), site_fix(config, exc))
    except TransientError as exc:
        return CheckResult(
            "library", False, str(exc), f"check that {config.graph_base_url} is reachable from here (proxy, "
            "firewall, REQUESTS_CA_BUNDLE) and GRAPH_BASE_URL"
        )
    return CheckResult("library", True, f"{drive.name!r} id {drive.id} at {drive.web_url}")


def check_minio(config: Config, client: Minio) -> CheckResult:
    """Reach MinIO with the configured credentials."""
    try:
        names = [b.name for b in client.list_buckets()]
    except S3Error as exc:
        if exc.code == "AccessDenied":
            # The credentials work; this user may simply not list buckets.
            detail = f"{config.minio_endpoint} answers; this user may not list buckets"
            return CheckResult("minio", True, detail)
        fix = (
            "check MINIO_ACCESS_KEY and MINIO_SECRET_KEY"
            if exc.code in DENIED_CODES
            else f"check MINIO_ENDPOINT ({config.minio_endpoint}) points at MinIO"
        )
        return CheckResult("minio", False, f"{config.minio_endpoint} refused: {exc.code}", fix)
    except (MinioException, Urllib3Error, OSError) as exc:
        return CheckResult(
            "minio",
            False,
            f"cannot reach {config.minio_endpoint}: {_reason(exc)}",
            "check MINIO_ENDPOINT and that MinIO runs and is reachable from here "
            "(for https, SSL_CERT_FILE must trust its certificate)",
        )
    return CheckResult("minio", True, f"{config.minio_endpoint} answers; {len(names)} bucket(s) visible")


def check_bucket(client: Minio, bucket: str) -> CheckResult:
    """Check that `bucket` exists."""
    name = f"bucket {bucket}"
    try:
        exists = client.bucket_exists(bucket)
    except ValueError as exc:
        return CheckResult(name, False, str(exc), "correct the name in BUCKETS")
    except S3Error as exc:
        return CheckResult(name, False, f"refused: {exc.code}", "give the MinIO user s3:ListBucket on it")
    except (MinioException, Urllib3Error, OSError) as exc:
        return CheckResult(name, False, f"cannot reach MinIO: {_reason(exc)}", "check MINIO_ENDPOINT")
    if not exists:
        return CheckResult(
            name, False, "does not exist", "run `python -m sharepoint_proxy setup-minio`, or correct BUCKETS"
        )
    return CheckResult(name, True, "exists")


def run_checks(environ: Mapping[str, str]) -> Iterator[CheckResult]:
    """Run every check in order, skipping those whose prerequisite failed."""
    settings, config = check_settings(environ)
    yield settings
    if config is None:
        return
    certificate, credential = check_certificate(config)
    yield certificate
    if credential is None:
        yield _skipped("token", "certificate")
        yield _skipped("library", "token")
    else:
        tokens = TokenProvider(config, credential=credential)
        token = check_token(config, tokens)
        yield token
        if token.ok:
            graph = GraphClient(config, tokens, retry_budget_seconds=CHECK_RETRY_BUDGET_SECONDS)
            yield check_library(config, graph)
        else:
            yield _skipped("library", "token")
    client = MinioSource.from_config(config).client
    reachable = check_minio(config, client)
    yield reachable
    if not config.buckets:
        yield CheckResult("buckets", True, "BUCKETS is empty: setup-minio and sync need bucket names")
    for bucket in config.buckets:
        yield check_bucket(client, bucket) if reachable.ok else _skipped(f"bucket {bucket}", "minio")


def _skipped(name: str, prerequisite: str) -> CheckResult:
    return CheckResult(name, False, f"not checked: needs {prerequisite}", skipped=True)


def _certificate_fix(problems: list[str]) -> str:
    """Say what to do about CertificateCredential's problems (each starts with the variable)."""
    first = problems[0] if problems else ""
    if first.startswith("KEY_PASSPHRASE"):
        return "set KEY_PASSPHRASE to the passphrase the key was encrypted with (remove it for a plain key)"
    if first.startswith("CERT_PATH/KEY_PATH"):
        return (
            "point CERT_PATH and KEY_PATH at the two halves of one pair: the certificate uploaded "
            "to the app registration and the key it was made with"
        )
    if first.startswith("KEY_PATH"):
        return "point KEY_PATH at the PEM private key (PKCS#8 or PKCS#1) of the certificate"
    return "point CERT_PATH at the PEM certificate uploaded to the app registration"


def _token_fix(exc: ProxyError, config: Config) -> str:
    """Say what to do about a token that could not be had, from the identity provider's codes."""
    if not isinstance(exc, TokenRefusedError):
        return f"check AUTHORITY ({config.authority}) and that it is reachable (proxy, REQUESTS_CA_BUNDLE)"
    codes = set(exc.codes)
    if 700016 in codes or exc.error == "unauthorized_client":
        return f"check CLIENT_ID ({config.client_id}) and TENANT_ID: no such app in the tenant"
    if codes & {90002, 900023}:
        return f"check TENANT_ID ({config.tenant_id}): no such tenant"
    if codes & {7000215, 700024}:
        return "check this machine's clock: the signed assertion is outside its time window"
    if 700027 in codes or exc.error == "invalid_client":
        return (
            "upload the certificate (thumbprint above) to the app registration, under Certificates "
            f"& secrets, and check CLIENT_ID ({config.client_id}) names that app"
        )
    return "see the identity provider's message; check TENANT_ID, CLIENT_ID and AUTHORITY"


def _reason(exc: BaseException) -> str:
    """Name the innermost cause of a network failure (connection refused, bad certificate...)."""
    reason = getattr(exc, "reason", None)
    if reason is None:
        return type(exc).__name__
    text = str(reason)
    if text.startswith("<") and ">: " in text:
        text = text.split(">: ", 1)[1]  # drop urllib3's "<HTTPConnection object at 0x...>: "
    return f"{type(reason).__name__}: {text}"
