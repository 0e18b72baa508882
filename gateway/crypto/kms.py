"""The KMS seam: the async Protocol the object layer calls, the KES context bytes, and an
in-memory KMS for unit tests.

Implementations raise only these errors (gateway.objects.errors):
    KMSKeyNotFound        the key does not exist (KES 404 "key does not exist")
    KMSAccessDenied       the identity may not use the key (KES 403)
    KMSInvalidCiphertext  the ciphertext or its context is not authentic (KES 400 ErrDecrypt)
    KMSUnavailable        no endpoint answered (network error, timeout, 5xx); retryable
"""

from __future__ import annotations

import hashlib
import hmac
import os
import posixpath
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from typing import Literal, NamedTuple, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.objects.errors import KMSInvalidCiphertext, KMSKeyNotFound, KMSUnavailable

__all__ = [
    "KMS",
    "ContextScope",
    "DataKey",
    "MemoryKMS",
    "canonical_context",
    "kms_context",
    "minio_path_join",
    "valid_key_name",
]

ContextScope = Literal["object", "bucket"]


class DataKey(NamedTuple):
    """A data key from `generate_key`: use `plaintext`, store `ciphertext`."""

    plaintext: bytes
    ciphertext: bytes

    def __repr__(self) -> str:  # the plaintext must never reach a log
        return f"DataKey(ciphertext={len(self.ciphertext)} bytes)"


class KMS(Protocol):
    """What the encryption core needs from KES (the `kes` branch's pool adapts to this)."""

    @property
    def default_key_id(self) -> str:
        """MINIO_KMS_KES_KEY_NAME: the key for SSE-S3 and SSE-KMS without a key id."""
        ...

    async def generate_key(self, key_id: str, context: bytes) -> tuple[bytes, bytes]:
        """(plaintext, ciphertext) of a fresh 256-bit data key whose ciphertext is bound to
        `context` (KES generate). A DataKey, or the KES client's plain tuple."""
        ...

    async def decrypt(self, key_id: str, ciphertext: bytes, context: bytes) -> bytes:
        """The plaintext of a data key; `context` must be the bytes used to generate it."""
        ...

    async def key_exists(self, key_id: str) -> bool: ...

    async def create_key(self, key_id: str) -> None:
        """Creates the key; an existing key is not an error."""
        ...


_KEY_NAME = re.compile(r"[0-9A-Za-z_-]{1,80}")


def valid_key_name(name: str) -> bool:
    """KES's name rule: 1-80 of [0-9A-Za-z_-], no leading or trailing '-', not '_' alone."""
    return (
        _KEY_NAME.fullmatch(name) is not None
        and not name.startswith("-")
        and not name.endswith("-")
        and name != "_"
    )


def _json_escapes() -> dict[int, str]:
    """Go's HTML-safe JSON string escaping, as MinIO's context encoder does it."""
    table = {c: f"\\u{c:04x}" for c in range(0x20)}
    table.update({ord("\n"): "\\n", ord("\r"): "\\r", ord("\t"): "\\t"})
    table.update({ord('"'): '\\"', ord("\\"): "\\\\"})
    table.update({ord(c): f"\\u{ord(c):04x}" for c in "<>&\u2028\u2029"})
    # Lone surrogates are what invalid UTF-8 becomes in Python; Go writes U+FFFD for it.
    table.update({c: "\\ufffd" for c in range(0xD800, 0xE000)})
    return table


_ESCAPES = _json_escapes()


def canonical_context(context: Mapping[str, str]) -> bytes:
    """MinIO's canonical JSON of a context: keys sorted bytewise, no spaces, HTML-safe."""
    keys = sorted(context, key=lambda k: k.encode("utf-8", "surrogatepass"))
    body = ",".join(
        f'"{k.translate(_ESCAPES)}":"{context[k].translate(_ESCAPES)}"' for k in keys
    )
    return ("{" + body + "}").encode("utf-8")


def minio_path_join(bucket: str, key: str) -> str:
    """Go's path.Join(bucket, key): cleaned, no trailing slash (what MinIO puts in contexts)."""
    return posixpath.normpath(f"{bucket}/{key}") if key else bucket


def kms_context(
    bucket: str,
    key: str,
    *,
    client_context: Mapping[str, str] | None = None,
    scope: ContextScope = "object",
) -> bytes:
    """The context bytes sent with generate and decrypt for an object.

    scope "object" is MinIO's: {bucket: "bucket/key"} plus the SSE-KMS client context (whose
    own entry for the bucket name wins). scope "bucket" binds only the bucket, {bucket:
    "bucket"}, so one cached data key can serve many objects; the object path is still bound
    by the KEK derivation (keys.derive_kek).
    """
    context = dict(client_context or {})
    context.setdefault(bucket, minio_path_join(bucket, key) if scope == "object" else bucket)
    return canonical_context(context)


class MemoryKMS:
    """An in-process KMS for unit tests: KES's ciphertext format, call counts, an off switch.

    Not for production: its master keys live and die with the process.
    """

    def __init__(self, default_key_id: str = "tessera-default", keys: Iterable[str] = ()):
        self._default = default_key_id
        self._keys: dict[str, bytes] = {}
        for name in (default_key_id, *keys):
            self._keys[name] = os.urandom(32)
        self.calls: Counter[str] = Counter()
        self.available = True

    @property
    def default_key_id(self) -> str:
        return self._default

    async def generate_key(self, key_id: str, context: bytes) -> DataKey:
        master = self._master(key_id, "generate")
        plaintext = os.urandom(32)
        iv, nonce = os.urandom(16), os.urandom(12)
        sealed = AESGCM(_message_key(master, iv)).encrypt(nonce, plaintext, context)
        return DataKey(plaintext, sealed + iv + nonce)

    async def decrypt(self, key_id: str, ciphertext: bytes, context: bytes) -> bytes:
        master = self._master(key_id, "decrypt")
        if len(ciphertext) <= 28:
            raise KMSInvalidCiphertext("decryption failed: ciphertext is not authentic")
        sealed, iv, nonce = ciphertext[:-28], ciphertext[-28:-12], ciphertext[-12:]
        try:
            return AESGCM(_message_key(master, iv)).decrypt(nonce, sealed, context)
        except InvalidTag as exc:
            raise KMSInvalidCiphertext("decryption failed: ciphertext is not authentic") from exc

    async def key_exists(self, key_id: str) -> bool:
        self._check_available("describe")
        return key_id in self._keys

    async def create_key(self, key_id: str) -> None:
        self._check_available("create")
        self._keys.setdefault(key_id, os.urandom(32))

    def _master(self, key_id: str, call: str) -> bytes:
        self._check_available(call)
        try:
            return self._keys[key_id]
        except KeyError:
            raise KMSKeyNotFound(f"KMS key {key_id!r} does not exist") from None

    def _check_available(self, call: str) -> None:
        self.calls[call] += 1
        if not self.available:
            raise KMSUnavailable("no KMS endpoint is reachable")


def _message_key(master: bytes, iv: bytes) -> bytes:
    return hmac.digest(master, iv, hashlib.sha256)
