"""The key hierarchy: object keys, key-encryption keys, sealing, part keys and ETag sealing.

    external key EK (KES data key plaintext, or the SSE-C customer key)
      └─ KEK = HMAC-SHA256(EK, iv ‖ domain ‖ "DAREv2-HMAC-SHA256" ‖ "bucket/key")
           └─ seals the object key OEK (32 random bytes) into 64 bytes (one package)
                ├─ single-part data: a package stream under OEK
                ├─ part n: HMAC-SHA256(OEK, "tessera-part-key" ‖ u32le(n) ‖ part_nonce)
                └─ ETag: HMAC-SHA256(OEK, "SSE-etag") seals the stored ETag

No function here keeps a key; callers drop the bytes when the request ends.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import struct
from dataclasses import dataclass
from typing import Literal

from gateway.crypto.stream import decrypt_bytes, encrypt_bytes
from gateway.objects.errors import ObjectTampered, SSECKeyMismatch

__all__ = [
    "IV_SIZE",
    "KEY_SIZE",
    "PART_NONCE_SIZE",
    "SEALED_KEY_SIZE",
    "SEAL_ALGORITHM",
    "SealDomain",
    "SealedKey",
    "derive_kek",
    "new_object_key",
    "new_part_nonce",
    "part_key",
    "random_etag",
    "seal_etag",
    "seal_object_key",
    "unseal_etag",
    "unseal_object_key",
]

KEY_SIZE = 32
IV_SIZE = 32
SEALED_KEY_SIZE = 64  # 16-byte header + 32-byte key + 16-byte tag
PART_NONCE_SIZE = 16
SEAL_ALGORITHM = "DAREv2-HMAC-SHA256"

SealDomain = Literal["SSE-S3", "SSE-KMS", "SSE-C"]
_DOMAINS = ("SSE-S3", "SSE-KMS", "SSE-C")
_PART_LABEL = b"tessera-part-key"
_ETAG_LABEL = b"SSE-etag"


@dataclass(frozen=True)
class SealedKey:
    """An object key sealed under a KEK: what metadata stores instead of the key."""

    iv: bytes  # 32 random bytes, input to the KEK derivation
    sealed: bytes  # 64 bytes
    algorithm: str = SEAL_ALGORITHM


def new_object_key() -> bytes:
    """A fresh random 256-bit object key."""
    return os.urandom(KEY_SIZE)


def new_part_nonce() -> bytes:
    """A fresh random nonce for one upload of one part (stored with the part)."""
    return os.urandom(PART_NONCE_SIZE)


def derive_kek(external_key: bytes, iv: bytes, domain: SealDomain, bucket: str, key: str) -> bytes:
    """The key-encryption key binding an object key to its SSE domain and `bucket/key`.

    The path is `bucket + "/" + key` as given, not path-cleaned: "a//b" and "a/b" are
    different objects and must not share a KEK. A bucket name has no "/", so the split is
    unambiguous, and no domain name is a prefix of another.
    """
    if len(external_key) != KEY_SIZE:
        raise ValueError("external key must be 32 bytes")
    if len(iv) != IV_SIZE:
        raise ValueError("seal iv must be 32 bytes")
    if domain not in _DOMAINS:
        raise ValueError(f"unknown seal domain {domain!r}")
    path = f"{bucket}/{key}".encode("utf-8", "surrogatepass")
    message = b"".join((iv, domain.encode(), SEAL_ALGORITHM.encode(), path))
    return hmac.digest(external_key, message, hashlib.sha256)


def seal_object_key(
    object_key: bytes,
    external_key: bytes,
    *,
    domain: SealDomain,
    bucket: str,
    key: str,
    iv: bytes | None = None,
) -> SealedKey:
    """Seals `object_key` under the KEK derived from `external_key` for `bucket/key`."""
    if len(object_key) != KEY_SIZE:
        raise ValueError("object key must be 32 bytes")
    iv = iv if iv is not None else os.urandom(IV_SIZE)
    kek = derive_kek(external_key, iv, domain, bucket, key)
    return SealedKey(iv=iv, sealed=encrypt_bytes(kek, object_key))


def unseal_object_key(
    sealed: SealedKey, external_key: bytes, *, domain: SealDomain, bucket: str, key: str
) -> bytes:
    """The object key inside `sealed`.

    Raises SSECKeyMismatch for SSE-C (a wrong customer key is indistinguishable from a
    tampered seal, and the client's key is the likely cause) and ObjectTampered otherwise.
    """
    if sealed.algorithm != SEAL_ALGORITHM:
        raise ObjectTampered(f"unknown seal algorithm {sealed.algorithm!r}")
    if len(sealed.sealed) != SEALED_KEY_SIZE or len(sealed.iv) != IV_SIZE:
        raise ObjectTampered("sealed object key has the wrong size")
    kek = derive_kek(external_key, sealed.iv, domain, bucket, key)
    try:
        object_key = decrypt_bytes(kek, sealed.sealed)
    except ObjectTampered as exc:
        if domain == "SSE-C":
            raise SSECKeyMismatch(
                "the provided customer key does not match the object's key"
            ) from exc
        raise ObjectTampered(f"sealed object key of {bucket}/{key} is not authentic") from exc
    if len(object_key) != KEY_SIZE:
        raise ObjectTampered("sealed object key has the wrong size")
    return object_key


def part_key(object_key: bytes, part_number: int, part_nonce: bytes) -> bytes:
    """The key of one upload of part `part_number`.

    MinIO derives it from the part number alone and its part nonce is deterministic, so a
    re-uploaded part reuses (key, nonce) with new data. The random per-upload `part_nonce`
    makes every upload's key distinct.
    """
    if not 1 <= part_number <= 0xFFFFFFFF:
        raise ValueError("part number out of range")
    if len(part_nonce) != PART_NONCE_SIZE:
        raise ValueError("part nonce must be 16 bytes")
    message = _PART_LABEL + struct.pack("<I", part_number) + part_nonce
    return hmac.digest(object_key, message, hashlib.sha256)


def _etag_key(object_key: bytes) -> bytes:
    return hmac.digest(object_key, _ETAG_LABEL, hashlib.sha256)


def seal_etag(object_key: bytes, etag: str) -> bytes:
    """The stored form of an encrypted object's ETag: it would otherwise reveal the MD5 of
    the plaintext on every node's disk."""
    return encrypt_bytes(_etag_key(object_key), etag.encode("ascii"))


def unseal_etag(object_key: bytes, sealed: bytes) -> str:
    """The ETag sealed by `seal_etag`; ObjectTampered if it is not authentic."""
    return decrypt_bytes(_etag_key(object_key), sealed).decode("ascii")


def random_etag() -> str:
    """An ETag for SSE-KMS / SSE-C objects: 32 hex digits that are not the MD5 (as on AWS),
    so those PUTs need no MD5 pass over the body."""
    return os.urandom(16).hex()
