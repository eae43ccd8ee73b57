"""Make a throwaway certificate authority, server certificates and Entra-style client credentials.

Everything is generated at test time into one directory: nothing secret is checked in, and
the CA (`ca.pem`) is what clients trust through `REQUESTS_CA_BUNDLE` / `SSL_CERT_FILE`.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

_VALIDITY = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(hours=1)


@dataclass(frozen=True)
class ClientCredential:
    """Hold a self-signed certificate and its private key, as registered on an Entra app."""

    cert_path: Path
    key_path: Path
    cert_pem: str
    key_pem: str = field(repr=False)
    passphrase: str | None = field(default=None, repr=False)

    @property
    def certificate(self) -> x509.Certificate:
        """Return the parsed certificate."""
        return x509.load_pem_x509_certificate(self.cert_pem.encode())

    def msal_credential(self) -> dict[str, str]:
        """Return the `client_credential` mapping that msal takes for this certificate."""
        credential = {"private_key": self.key_pem, "public_certificate": self.cert_pem}
        if self.passphrase is not None:
            credential["passphrase"] = self.passphrase
        return credential


class TestPKI:
    """Act as a certificate authority for one test session, writing its files to `directory`."""

    __test__ = False  # Not a test class, whatever pytest's name heuristics say.

    def __init__(self, directory: Path) -> None:
        """Create the CA key and certificate and write the certificate to `ca.pem`."""
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._ca_key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [x509.NameAttribute(NameOID.COMMON_NAME, "sharepoint-proxy test CA")]
        )
        now = _now()
        ski = x509.SubjectKeyIdentifier.from_public_key(self._ca_key.public_key())
        self._ca_cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(self._ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(_key_usage(cert_sign=True), critical=True)
            .add_extension(ski, critical=False)
            .sign(self._ca_key, hashes.SHA256())
        )
        self.ca_path = self.directory / "ca.pem"
        self.ca_path.write_bytes(self._ca_cert.public_bytes(serialization.Encoding.PEM))
        self._servers: dict[tuple[str, ...], tuple[Path, Path]] = {}

    def server_credentials(self, hostnames: list[str]) -> tuple[Path, Path]:
        """Return (certificate, key) PEM paths for a server known by `hostnames`.

        Each entry that parses as an IP address becomes an IP SAN, the others DNS SANs.
        """
        wanted = tuple(hostnames)
        if wanted in self._servers:
            return self._servers[wanted]
        key = ec.generate_private_key(ec.SECP256R1())
        now = _now()
        sans: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
            )
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .add_extension(_key_usage(digital_signature=True), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(
                    self._ca_key.public_key()
                ),
                critical=False,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        stem = _safe_name("server-" + "-".join(hostnames))
        cert_path = self.directory / f"{stem}.crt.pem"
        key_path = self.directory / f"{stem}.key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        self._servers[wanted] = (cert_path, key_path)
        return cert_path, key_path

    def ssl_context(self, hostnames: list[str]) -> ssl.SSLContext:
        """Return a server-side TLS context presenting a certificate for `hostnames`."""
        cert_path, key_path = self.server_credentials(hostnames)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(cert_path, key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Return a client-side TLS context that trusts this CA (for the stdlib and urllib3)."""
        return ssl.create_default_context(cafile=str(self.ca_path))

    def client_credential(
        self, name: str, *, passphrase: str | None = None, pkcs1: bool = False
    ) -> ClientCredential:
        """Make a self-signed RSA-2048 certificate and key as an Entra app registration holds.

        The key is PKCS#8 PEM, or PKCS#1 ("BEGIN RSA PRIVATE KEY") when `pkcs1`, and is
        encrypted with `passphrase` when one is given.
        """
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = _now()
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - _BACKDATE)
            .not_valid_after(now + _VALIDITY)
            .add_extension(
                x509.BasicConstraints(ca=False, path_length=None), critical=True
            )
            .sign(key, hashes.SHA256())
        )
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(passphrase.encode())
            if passphrase is not None
            else serialization.NoEncryption()
        )
        key_format = (
            serialization.PrivateFormat.TraditionalOpenSSL
            if pkcs1
            else serialization.PrivateFormat.PKCS8
        )
        cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, key_format, encryption
        ).decode()
        stem = _safe_name(f"client-{name}")
        cert_path = self.directory / f"{stem}.crt.pem"
        serial = 1
        while cert_path.exists():  # Never overwrite an earlier credential's files.
            serial += 1
            cert_path = self.directory / f"{stem}-{serial}.crt.pem"
        key_path = cert_path.with_name(cert_path.name.replace(".crt.pem", ".key.pem"))
        cert_path.write_text(cert_pem)
        key_path.write_text(key_pem)
        key_path.chmod(0o600)
        return ClientCredential(cert_path, key_path, cert_pem, key_pem, passphrase)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def _key_usage(
    *, cert_sign: bool = False, digital_signature: bool = False
) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)[:100]
