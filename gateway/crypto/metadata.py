"""What is stored with an encrypted object: `EncryptionMetadata` and its str -> str form.

Only sealed or KMS-encrypted material is stored: never a plaintext key, never the customer
key or its MD5. The object layer keeps the dict inside its own metadata blob.

    sse-mode           SSE-S3 | SSE-KMS | SSE-C
    sse-seal-alg       DAREv2-HMAC-SHA256
    sse-iv             base64, 32 bytes (KEK derivation input)
    sse-sealed-key     base64, 64 bytes (the sealed object key)
    sse-kms-key-id     KES key name                       (SSE-S3, SSE-KMS)
    sse-kms-ciphertext base64, KES ciphertext of the data key  (SSE-S3, SSE-KMS)
    sse-kms-context    base64 canonical JSON of the client's context (SSE-KMS, if sent)
    sse-context-scope  object | bucket: how the KES context was built (kms.kms_context)
    sse-multipart      "1" for objects made by a multipart upload
    sse-part-nonces    base64 of (uint32 LE part number ‖ 16-byte nonce) per part
    sse-etag           base64, the sealed ETag (SSE-S3: it is the plaintext's MD5)
"""

from __future__ import annotations

import base64
import binascii
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.crypto.keys import IV_SIZE, PART_NONCE_SIZE, SEALED_KEY_SIZE, SealedKey
from gateway.crypto.kms import ContextScope, canonical_context
from gateway.objects.api import EncryptionInfo, SSEMode
from gateway.objects.errors import ObjectTampered

__all__ = ["EncryptionMetadata", "is_encrypted"]

_MODES = ("SSE-S3", "SSE-KMS", "SSE-C")
_SCOPES = ("object", "bucket")
_PART = struct.Struct("<I16s")
assert _PART.size == 4 + PART_NONCE_SIZE


@dataclass(frozen=True)
class EncryptionMetadata:
    """How one object version is encrypted, as stored."""

    mode: SSEMode
    sealed_key: SealedKey
    kms_key_id: str | None = None
    kms_ciphertext: bytes | None = None
    kms_context: Mapping[str, str] | None = None  # SSE-KMS context as the client sent it
    context_scope: ContextScope = "object"
    multipart: bool = False
    # (part number, part nonce) of each part of a completed multipart object, in order
    part_nonces: tuple[tuple[int, bytes], ...] = ()
    sealed_etag: bytes | None = None

    def part_nonce(self, part_index: int) -> tuple[int, bytes]:
        """(part number, nonce) of the part at `part_index` (ranges.PartSegment.part_index)."""
        try:
            return self.part_nonces[part_index]
        except IndexError:
            raise ObjectTampered(f"no part nonce stored for part index {part_index}") from None

    def info(self) -> EncryptionInfo:
        """What S3 responses report about this object's encryption."""
        if self.mode != "SSE-KMS":
            return EncryptionInfo(mode=self.mode)
        context_b64 = None
        if self.kms_context is not None:
            context_b64 = base64.b64encode(canonical_context(self.kms_context)).decode()
        return EncryptionInfo(
            mode="SSE-KMS", kms_key_id=self.kms_key_id, kms_context_b64=context_b64
        )

    def to_dict(self) -> dict[str, str]:
        out = {
            "sse-mode": self.mode,
            "sse-seal-alg": self.sealed_key.algorithm,
            "sse-iv": _b64(self.sealed_key.iv),
            "sse-sealed-key": _b64(self.sealed_key.sealed),
        }
        if self.mode != "SSE-C":
            out["sse-kms-key-id"] = self.kms_key_id or ""
            out["sse-kms-ciphertext"] = _b64(self.kms_ciphertext or b"")
            out["sse-context-scope"] = self.context_scope
        if self.kms_context is not None:
            out["sse-kms-context"] = _b64(canonical_context(self.kms_context))
        if self.multipart:
            out["sse-multipart"] = "1"
        if self.part_nonces:
            packed = b"".join(_PART.pack(n, nonce) for n, nonce in self.part_nonces)
            out["sse-part-nonces"] = _b64(packed)
        if self.sealed_etag is not None:
            out["sse-etag"] = _b64(self.sealed_etag)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, str]) -> EncryptionMetadata:
        """Parses `to_dict` output; ObjectTampered if anything is missing or malformed."""
        try:
            return cls._parse(data)
        except (KeyError, ValueError, binascii.Error, struct.error) as exc:
            raise ObjectTampered(f"malformed encryption metadata: {exc!r}") from exc

    @classmethod
    def _parse(cls, data: Mapping[str, str]) -> EncryptionMetadata:
        mode = data["sse-mode"]
        if mode not in _MODES:
            raise ValueError(f"unknown mode {mode!r}")
        sealed = SealedKey(
            iv=_unb64(data["sse-iv"], IV_SIZE),
            sealed=_unb64(data["sse-sealed-key"], SEALED_KEY_SIZE),
            algorithm=data["sse-seal-alg"],
        )
        key_id = ciphertext = None
        scope = "object"
        if mode != "SSE-C":
            key_id = data["sse-kms-key-id"]
            ciphertext = _unb64(data["sse-kms-ciphertext"])
            scope = data["sse-context-scope"]
            if not key_id or not ciphertext or scope not in _SCOPES:
                raise ValueError("KMS fields incomplete")
        elif "sse-kms-ciphertext" in data or "sse-kms-key-id" in data:
            raise ValueError("SSE-C object with KMS fields")
        return cls(
            mode=mode,  # type: ignore[arg-type]
            sealed_key=sealed,
            kms_key_id=key_id,
            kms_ciphertext=ciphertext,
            kms_context=_context(data.get("sse-kms-context")),
            context_scope=scope,  # type: ignore[arg-type]
            multipart=data.get("sse-multipart") == "1",
            part_nonces=_part_nonces(data.get("sse-part-nonces")),
            sealed_etag=_unb64(data["sse-etag"]) if "sse-etag" in data else None,
        )


def is_encrypted(data: Mapping[str, str]) -> bool:
    """Whether a stored metadata dict describes an encrypted object."""
    return "sse-mode" in data


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str, size: int | None = None) -> bytes:
    raw = base64.b64decode(text, validate=True)
    if size is not None and len(raw) != size:
        raise ValueError(f"expected {size} bytes, got {len(raw)}")
    return raw


def _context(text: str | None) -> dict[str, str] | None:
    if text is None:
        return None
    context = json.loads(_unb64(text))
    if not isinstance(context, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in context.items()
    ):
        raise ValueError("context is not a map of strings")
    return context


def _part_nonces(text: str | None) -> tuple[tuple[int, bytes], ...]:
    if not text:
        return ()
    packed = _unb64(text)
    if len(packed) % _PART.size:
        raise ValueError("part nonce list has a partial entry")
    parts = tuple(_PART.iter_unpack(packed))
    numbers = [number for number, _ in parts]
    if numbers != sorted(set(numbers)) or numbers[0] < 1:
        raise ValueError("part numbers are not ascending")
    return parts
