"""The encoded form of a master key as KES stores it in any keystore, and RFC 3339 timestamps.

Current: standard base64 of the protobuf `miniohq.kms.KeyVersion`
(1: SecretKey{1: bytes key, 2: uint32 type}, 2: HMACKey{1: bytes key, 2: uint32 hash},
3: google.protobuf.Timestamp created_at, 4: string created_by). Legacy (KES <= 2023), still read:
JSON `{"bytes","algorithm","created_at","created_by"}`. The messages are tiny and fixed, so a
hand-written codec is clearer than generated stubs.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import re

from .crypto import AES256, CHACHA20, SecretKey

__all__ = ["KeyFormatError", "decode_key", "encode_key", "format_time", "parse_time"]

_TYPES = {AES256: 1, CHACHA20: 2}
_CIPHERS = {v: k for k, v in _TYPES.items()}
_LEGACY_ALGORITHMS = {"": AES256, "AES256": AES256, "AES256-GCM_SHA256": AES256,
                      "XCHACHA20-POLY1305": CHACHA20, "ChaCha20": CHACHA20}


class KeyFormatError(ValueError):
    """A stored key could not be parsed (corrupt or foreign data)."""


# ---- timestamps ----

def format_time(t: datetime.datetime) -> str:
    """RFC 3339 in UTC with nanoseconds, as Go's time.Time marshals (trailing zeros trimmed)."""
    t = t.astimezone(datetime.UTC)
    base = t.strftime("%Y-%m-%dT%H:%M:%S")
    frac = f"{t.microsecond:06d}000".rstrip("0")
    return f"{base}.{frac}Z" if frac else f"{base}Z"


_RFC3339 = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


def parse_time(text: str) -> datetime.datetime:
    m = _RFC3339.match(text)
    if not m:
        raise KeyFormatError(f"invalid timestamp {text!r}")
    base = datetime.datetime.fromisoformat(m.group(1) + (
        "+00:00" if m.group(3) == "Z" else m.group(3)))
    micros = int((m.group(2) or "0")[:6].ljust(6, "0"))
    return base.replace(microsecond=micros).astimezone(datetime.UTC)


# ---- protobuf wire format (varint, length-delimited) ----

def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _field_bytes(number: int, value: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(value)) + value


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value) if value else b""


def _fields(data: bytes) -> dict[int, bytes | int]:
    out: dict[int, bytes | int] = {}
    pos = 0
    while pos < len(data):
        tag, pos = _read_varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            out[number], pos = _read_varint(data, pos)
        elif wire == 2:
            length, pos = _read_varint(data, pos)
            if pos + length > len(data):
                raise KeyFormatError("truncated protobuf field")
            out[number], pos = data[pos:pos + length], pos + length
        else:
            raise KeyFormatError(f"unexpected protobuf wire type {wire}")
    return out


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise KeyFormatError("bad varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def encode_key(key: SecretKey) -> bytes:
    """The keystore value of `key`: base64 text of the protobuf KeyVersion."""
    ts = key.created_at.astimezone(datetime.UTC)
    seconds = int(ts.timestamp())
    timestamp = _field_varint(1, seconds) + _field_varint(2, ts.microsecond * 1000)
    msg = _field_bytes(1, _field_bytes(1, key.key) + _field_varint(2, _TYPES[key.cipher]))
    if key.hmac_key is not None:
        msg += _field_bytes(2, _field_bytes(1, key.hmac_key) + _field_varint(2, 1))
    msg += _field_bytes(3, timestamp) + _field_bytes(4, key.created_by.encode())
    return base64.b64encode(msg)


def decode_key(value: bytes) -> SecretKey:
    """Parse a keystore value in the current protobuf or the legacy JSON format."""
    text = value.strip()
    if text.startswith(b"{"):
        return _decode_legacy(text)
    try:
        msg = _fields(base64.b64decode(text, validate=True))
        secret = _fields(_bytes(msg.get(1)))
        key = _bytes(secret.get(1))
        cipher = _CIPHERS.get(int(secret.get(2, 0)))  # type: ignore[arg-type]
        hmac_key = _bytes(_fields(_bytes(msg[2])).get(1)) if 2 in msg else None
        ts = _fields(_bytes(msg.get(3, b"")))
        created = datetime.datetime.fromtimestamp(int(ts.get(1, 0)), datetime.UTC)  # type: ignore[arg-type]
        created += datetime.timedelta(microseconds=int(ts.get(2, 0)) // 1000)  # type: ignore[arg-type]
        created_by = _bytes(msg.get(4, b"")).decode()
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise KeyFormatError(f"invalid key encoding: {exc}") from exc
    if cipher is None or len(key) != 32 or (hmac_key is not None and len(hmac_key) != 32):
        raise KeyFormatError("invalid key: unknown type or wrong size")
    return SecretKey(key, cipher, hmac_key, created, created_by)


def _bytes(value: bytes | int | None) -> bytes:
    if not isinstance(value, bytes):
        raise KeyFormatError("missing protobuf field")
    return value


def _decode_legacy(text: bytes) -> SecretKey:
    try:
        doc = json.loads(text)
        key = base64.b64decode(doc["bytes"])
        cipher = _LEGACY_ALGORITHMS[doc.get("algorithm") or ""]
        created = parse_time(doc["created_at"]) if doc.get("created_at") else (
            datetime.datetime.fromtimestamp(0, datetime.UTC))
    except (ValueError, KeyError, TypeError, binascii.Error) as exc:
        raise KeyFormatError(f"invalid legacy key: {exc}") from exc
    if len(key) != 32:
        raise KeyFormatError("invalid legacy key size")
    return SecretKey(key, cipher, None, created, doc.get("created_by") or "")
