"""KES master keys and their ciphertexts: the current raw format plus the two legacy ones.

Current format: AEAD output (ciphertext ‖ tag16) ‖ iv16 ‖ nonce12. AES256 keys seal with
AES-256-GCM under HMAC-SHA256(master, iv); ChaCha20 keys with ChaCha20-Poly1305 under
HChaCha20(master, iv). Decrypt also reads MessagePack (first byte 0x95) and JSON (0x7b) envelopes
written by KES before 2024; the stored key's cipher decides the AEAD, as in KES.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os
import struct
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

from .errors import DecryptError

__all__ = ["AES256", "CHACHA20", "SecretKey", "decrypt", "encrypt", "hchacha20", "key_hmac",
           "new_key", "parse_cipher"]

AES256 = "AES256"
CHACHA20 = "ChaCha20"
_IV, _NONCE = 16, 12
# Import accepts the current and the legacy cipher names.
_CIPHER_NAMES = {"AES256": AES256, "AES256-GCM_SHA256": AES256,
                 "ChaCha20": CHACHA20, "XCHACHA20-POLY1305": CHACHA20}


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@dataclass(frozen=True)
class SecretKey:
    """A master key as kept in a keystore. `hmac_key` is None for keys written by old KES."""

    key: bytes = field(repr=False)
    cipher: str = AES256
    hmac_key: bytes | None = field(default=None, repr=False)
    created_at: datetime.datetime = field(default_factory=_now)
    created_by: str = ""


def parse_cipher(name: str) -> str | None:
    """The canonical cipher for an import request's cipher name, None if unsupported."""
    return _CIPHER_NAMES.get(name)


def new_key(created_by: str, cipher: str = AES256, key: bytes | None = None) -> SecretKey:
    """A fresh master key (random unless `key` is given) with its own random HMAC key."""
    return SecretKey(key if key is not None else os.urandom(32), cipher, os.urandom(32),
                     _now(), created_by)


def _rotl(v: int, n: int) -> int:
    return ((v << n) & 0xFFFFFFFF) | (v >> (32 - n))


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """HChaCha20 subkey derivation (RFC draft-irtf-cfrg-xchacha §2.2); ChaCha20 keys only."""
    s = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    s += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def quarter(a: int, b: int, c: int, d: int) -> None:
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl(s[d] ^ s[a], 16)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl(s[b] ^ s[c], 12)
        s[a] = (s[a] + s[b]) & 0xFFFFFFFF
        s[d] = _rotl(s[d] ^ s[a], 8)
        s[c] = (s[c] + s[d]) & 0xFFFFFFFF
        s[b] = _rotl(s[b] ^ s[c], 7)

    for _ in range(10):
        quarter(0, 4, 8, 12)
        quarter(1, 5, 9, 13)
        quarter(2, 6, 10, 14)
        quarter(3, 7, 11, 15)
        quarter(0, 5, 10, 15)
        quarter(1, 6, 11, 12)
        quarter(2, 7, 8, 13)
        quarter(3, 4, 9, 14)
    return struct.pack("<8I", *(s[0:4] + s[12:16]))


def _aead(key: SecretKey, iv: bytes) -> AESGCM | ChaCha20Poly1305:
    if key.cipher == AES256:
        return AESGCM(hmac.new(key.key, iv, hashlib.sha256).digest())
    return ChaCha20Poly1305(hchacha20(key.key, iv))


def encrypt(key: SecretKey, plaintext: bytes, context: bytes = b"") -> bytes:
    """Seal `plaintext` under `key` with `context` as associated data (KES's raw format)."""
    random = os.urandom(_IV + _NONCE)
    iv, nonce = random[:_IV], random[_IV:]
    return _aead(key, iv).encrypt(nonce, plaintext, context) + iv + nonce


def decrypt(key: SecretKey, ciphertext: bytes, context: bytes = b"") -> bytes:
    """Open a ciphertext of any KES format; DecryptError on any failure."""
    raw = _normalise(ciphertext)
    if len(raw) <= _IV + _NONCE:
        raise DecryptError
    sealed, iv, nonce = raw[:-28], raw[-28:-12], raw[-12:]
    try:
        return _aead(key, iv).decrypt(nonce, sealed, context)
    except (InvalidTag, ValueError) as exc:
        raise DecryptError from exc


def _normalise(ciphertext: bytes) -> bytes:
    """Legacy envelopes become sealed ‖ iv ‖ nonce; anything unparsable is taken as raw."""
    try:
        if ciphertext[:1] == b"\x95":
            return _from_msgpack(ciphertext)
        if ciphertext[:1] == b"{":
            doc = json.loads(ciphertext)
            iv, nonce = base64.b64decode(doc["iv"]), base64.b64decode(doc["nonce"])
            if len(iv) == _IV and len(nonce) == _NONCE:
                return base64.b64decode(doc["bytes"]) + iv + nonce
    except (ValueError, KeyError, TypeError, IndexError, struct.error):
        pass
    return ciphertext


def _from_msgpack(data: bytes) -> bytes:
    """[str algorithm, str key id, bin iv, bin nonce, bin sealed] as written by KES 2022-2024."""
    items, pos = [], 1
    for _ in range(5):
        tag = data[pos]
        if 0xA0 <= tag <= 0xBF:  # fixstr
            length, pos = tag & 0x1F, pos + 1
        elif tag in (0xC4, 0xD9):  # bin8 / str8
            length, pos = data[pos + 1], pos + 2
        elif tag in (0xC5, 0xDA):  # bin16 / str16
            length, pos = struct.unpack_from(">H", data, pos + 1)[0], pos + 3
        elif tag in (0xC6, 0xDB):  # bin32 / str32
            length, pos = struct.unpack_from(">I", data, pos + 1)[0], pos + 5
        else:
            raise ValueError("not a KES MessagePack ciphertext")
        items.append(data[pos:pos + length])
        pos += length
    if pos != len(data) or len(items[2]) != _IV or len(items[3]) != _NONCE:
        raise ValueError("not a KES MessagePack ciphertext")
    return items[4] + items[2] + items[3]


def key_hmac(key: SecretKey, message: bytes) -> bytes:
    """HMAC-SHA256 of `message` under the key's HMAC key (caller checks it exists)."""
    assert key.hmac_key is not None
    return hmac.new(key.hmac_key, message, hashlib.sha256).digest()
