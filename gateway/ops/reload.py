"""What SIGHUP reloads (as MinIO does, minio#14869): the KES client certificate, key and CA
(`MINIO_KMS_KES_CERT_FILE`, `MINIO_KMS_KES_KEY_FILE`, `MINIO_KMS_KES_CAPATH`) and the
certificate and key served on the HTTPS port, without a restart.

Requests in flight keep the connections (and identity) they have; new connections use the new
files. Each part is loaded and checked in full before it replaces anything, so a bad file (a
half-written copy, a key that does not match) keeps the old identity and is named in one log
line. The HTTPS certificate is replaced inside the server's own TLS context (OpenSSL swaps it
for new handshakes only); the new files are first copied to a private directory so the check
and the swap read the same bytes even while the operator is still writing.
"""

from __future__ import annotations

import logging
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from kes.identity import identity_of_pem

__all__ = ["CredentialReloader", "ServedCertificate", "check_pair", "load_server_certificate"]

log = logging.getLogger("tessera.gateway")


@dataclass
class ServedCertificate:
    """A TLS server context (fetched when needed: uvicorn makes it at start) and its files."""

    context: Callable[[], ssl.SSLContext | None]
    cert: Path
    key: Path


class CredentialReloader:
    """`reload()` re-reads every part and logs one line for what was reloaded and one per
    part that was not; returns True when everything was reloaded."""

    def __init__(self, *, kes: Any = None, kes_probe: Any = None, kes_config: Any = None,
                 served: list[ServedCertificate] | None = None):
        self.kes = kes  # has reload_identity() (gateway.kes_kms.KESKMS)
        self.kes_probe = kes_probe  # gateway.ops.kms_probe.KMSProbe
        self.kes_config = kes_config  # kes.client.KESConfig
        self.served = served or []

    def reload(self) -> bool:
        done, failed = [], []
        if self.kes is not None:
            try:
                config = self.kes_config
                if config is not None and config.cert_file:
                    check_pair(Path(config.cert_file), Path(config.key_file),
                               config.key_password or None)
                self.kes.reload_identity()
                if self.kes_probe is not None:
                    self.kes_probe.reload_identity()
                done.append(self._kes_description())
            except (OSError, ValueError) as exc:
                failed.append(f"KES client certificate not reloaded, still using the previous "
                              f"one: {_reason(exc)}")
        for served in self.served:
            context = served.context()
            if context is None:
                continue
            try:
                check_pair(served.cert, served.key)
                load_server_certificate(context, served.cert, served.key)
                done.append(f"HTTPS certificate {served.cert} ({_describe_cert(served.cert)})")
            except (OSError, ValueError) as exc:
                failed.append(f"HTTPS certificate {served.cert} not reloaded, still serving the "
                              f"previous one: {_reason(exc)}")
        if done:
            log.info("SIGHUP: reloaded %s", "; ".join(done))
        for line in failed:
            log.warning("SIGHUP: %s", line)
        if not done and not failed:
            log.info("SIGHUP: nothing to reload (no KES client certificate, no HTTPS port)")
        return not failed

    def _kes_description(self) -> str:
        config = self.kes_config
        if config is None or not config.cert_file:
            where = f" (CA {config.capath})" if config is not None and config.capath else ""
            return f"KES client trust{where}"
        try:
            identity = identity_of_pem(config.cert_file)[:16] + "…"
        except (OSError, ValueError):
            identity = "unknown"  # replaced again since it was loaded
        return f"KES client certificate {config.cert_file} (identity {identity})"


def check_pair(cert: Path, key: Path, password: str | None = None) -> None:
    """Raise ValueError naming the file when `cert` is not a PEM certificate, `key` not a PEM
    private key, or the key is not the certificate's (clearer than OpenSSL's "PEM lib")."""
    try:
        leaf = x509.load_pem_x509_certificates(Path(cert).read_bytes())[0]
    except ValueError:
        raise ValueError(f"{cert} holds no PEM certificate") from None
    try:
        private = serialization.load_pem_private_key(
            Path(key).read_bytes(), password.encode() if password else None)
    except (ValueError, TypeError):
        raise ValueError(f"{key} holds no readable PEM private key") from None
    spki = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    if private.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise ValueError(f"the key in {key} is not the key of the certificate in {cert}")


def load_server_certificate(context: ssl.SSLContext, cert: Path, key: Path) -> None:
    """Replace the certificate and key `context` serves; raises (OSError, ValueError) and
    leaves `context` as it was when they cannot be loaded together."""
    with tempfile.TemporaryDirectory(prefix="tessera-reload-") as tmp:
        copies = []
        for source, name in ((cert, "cert.pem"), (key, "key.pem")):
            data = Path(source).read_bytes()
            path = os.path.join(tmp, name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            copies.append(path)
        # a half-loaded live context (new certificate, old key) would fail every handshake
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(*copies)
        context.load_cert_chain(*copies)


def _describe_cert(path: Path) -> str:
    try:
        cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    except (OSError, ValueError):
        return "replaced again since it was loaded"
    names = cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else cert.subject.rfc4514_string()
    return f"CN {subject}, serial {cert.serial_number:x}, valid until " \
           f"{cert.not_valid_after_utc:%Y-%m-%d}"


def _reason(exc: BaseException) -> str:
    if isinstance(exc, ssl.SSLError):  # after check_pair, mostly a CA file OpenSSL refused
        return f"OpenSSL refused a file: {exc.reason or exc}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"{exc.strerror}: {exc.filename}" if exc.filename else exc.strerror
    return (str(exc) or type(exc).__name__).splitlines()[0][:200]
