"""KES identities: the SHA-256 of a certificate's public key; making identity certificates."""

from __future__ import annotations

import base64
import datetime
import hashlib
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["api_key_certificate", "api_key_identity", "identity_of_certificate", "identity_of_pem",
           "is_identity", "new_api_key", "new_identity", "parse_api_key"]


def identity_of_certificate(cert: x509.Certificate) -> str:
    """Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo (so re-issuing keeps it)."""
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(spki).hexdigest()


def identity_of_pem(path: Path | str) -> str:
    """Identity of the (first) certificate in a PEM file."""
    return identity_of_certificate(x509.load_pem_x509_certificate(Path(path).read_bytes()))


def is_identity(text: str) -> bool:
    """True for a 64-character hex string (KES treats anything else, e.g. `disabled`, as none)."""
    try:
        return len(text) == 64 and bytes.fromhex(text) is not None
    except ValueError:
        return False


def _load_ca(ca_cert: Path, ca_key: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert = x509.load_pem_x509_certificate(ca_cert.read_bytes())
    key = serialization.load_pem_private_key(ca_key.read_bytes(), password=None)
    return cert, key  # type: ignore[return-value]


def new_identity(name: str, cert_path: Path, key_path: Path, *, ca_cert: Path | None = None,
                 ca_key: Path | None = None, hosts: tuple[str, ...] = (),
                 days: int = 365) -> str:
    """Write a P-256 private key and a client (and, with `hosts`, server) certificate; return its
    identity. Self-signed unless a CA certificate and key are given."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    issuer_name, signer = subject, key
    if ca_cert and ca_key:
        ca, signer = _load_ca(ca_cert, ca_key)
        issuer_name = ca.subject
    now = datetime.datetime.now(datetime.UTC)
    usages = [ExtendedKeyUsageOID.CLIENT_AUTH] + ([ExtendedKeyUsageOID.SERVER_AUTH] if hosts
                                                   else [])
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(issuer_name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    )
    if hosts:
        sans: list[x509.GeneralName] = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    cert = builder.sign(signer, hashes.SHA256())
    key_path.write_bytes(b"")
    key_path.chmod(0o600)
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return identity_of_certificate(cert)


# ---- API keys (kms-go `kes:v1:`): an Ed25519 seed presented as a self-signed certificate ----

_API_KEY_PREFIX = "kes:v1:"


def new_api_key() -> str:
    """A fresh API key: `kes:v1:` + base64(0x00 || 32-byte Ed25519 seed)."""
    seed = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
        serialization.NoEncryption())
    return _API_KEY_PREFIX + base64.b64encode(b"\x00" + seed).decode()


def parse_api_key(text: str) -> ed25519.Ed25519PrivateKey:
    """The Ed25519 private key of an API key; ValueError when it is not one."""
    if not text.startswith(_API_KEY_PREFIX):
        raise ValueError("not a KES API key (want kes:v1:...)")
    try:
        raw = base64.b64decode(text[len(_API_KEY_PREFIX):], validate=True)
    except ValueError as exc:
        raise ValueError("KES API key is not valid base64") from exc
    if len(raw) != 33 or raw[0] != 0:
        raise ValueError("KES API key has the wrong length or type")
    return ed25519.Ed25519PrivateKey.from_private_bytes(raw[1:])


def api_key_identity(text: str) -> str:
    """SHA-256 of the Ed25519 SubjectPublicKeyInfo, as kms-go computes it."""
    spki = parse_api_key(text).public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(spki).hexdigest()


def api_key_certificate(text: str) -> tuple[bytes, bytes]:
    """(certificate PEM, private key PEM): the self-signed client certificate kms-go derives
    from an API key (CN = identity, 90 days, client auth)."""
    key = parse_api_key(text)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, api_key_identity(text))])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=90))
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
        .sign(key, None)
    )
    return (cert.public_bytes(serialization.Encoding.PEM),
            key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                              serialization.NoEncryption()))
