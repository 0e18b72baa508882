"""Master-key crypto: the raw ciphertext format, legacy envelopes, HChaCha20, key encodings."""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import json
import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from kes.crypto import CHACHA20, SecretKey, decrypt, encrypt, hchacha20, new_key
from kes.errors import DecryptError
from kes.keyfile import KeyFormatError, decode_key, encode_key, format_time, parse_time


def test_raw_format_is_aead_iv_nonce_with_hmac_derived_key() -> None:
    key = new_key("me")
    context = b'{"bucket":"bucket/object"}'
    ct = encrypt(key, b"k" * 32, context)
    assert len(ct) == 32 + 16 + 16 + 12  # 76 bytes, as KES
    sealed, iv, nonce = ct[:-28], ct[-28:-12], ct[-12:]
    message_key = hmac.new(key.key, iv, hashlib.sha256).digest()
    assert AESGCM(message_key).decrypt(nonce, sealed, context) == b"k" * 32
    assert decrypt(key, ct, context) == b"k" * 32


@pytest.mark.parametrize("mutate", [
    lambda ct: ct[:-1] + bytes([ct[-1] ^ 1]),
    lambda ct: bytes([ct[0] ^ 1]) + ct[1:],
    lambda ct: ct[:28],
    lambda ct: b"",
])
def test_tampered_or_short_ciphertext_is_decrypt_error(mutate) -> None:
    key = new_key("me")
    with pytest.raises(DecryptError) as err:
        decrypt(key, mutate(encrypt(key, b"secret", b"ctx")), b"ctx")
    assert (err.value.status, err.value.message) == (
        400, "decryption failed: ciphertext is not authentic")


def test_wrong_context_or_key_fails() -> None:
    key = new_key("me")
    ct = encrypt(key, b"secret", b"a")
    with pytest.raises(DecryptError):
        decrypt(key, ct, b"b")
    with pytest.raises(DecryptError):
        decrypt(new_key("me"), ct, b"a")


def _msgpack_bin(data: bytes) -> bytes:
    return b"\xc4" + bytes([len(data)]) + data


def _msgpack_str(text: str) -> bytes:
    if len(text) < 32:
        return bytes([0xA0 | len(text)]) + text.encode()
    return b"\xd9" + bytes([len(text)]) + text.encode()


def test_legacy_msgpack_and_json_envelopes_decrypt() -> None:
    key = new_key("me")
    raw = encrypt(key, b"legacy plaintext", b"ctx")
    sealed, iv, nonce = raw[:-28], raw[-28:-12], raw[-12:]
    packed = (b"\x95" + _msgpack_str("AES256-GCM_SHA256") + _msgpack_str("0" * 32)
              + _msgpack_bin(iv) + _msgpack_bin(nonce) + _msgpack_bin(sealed))
    assert decrypt(key, packed, b"ctx") == b"legacy plaintext"
    doc = json.dumps({"aead": "AES-256-GCM-HMAC-SHA-256", "id": "x",
                      "iv": base64.b64encode(iv).decode(),
                      "nonce": base64.b64encode(nonce).decode(),
                      "bytes": base64.b64encode(sealed).decode()}).encode()
    assert decrypt(key, doc, b"ctx") == b"legacy plaintext"


def test_hchacha20_test_vector_and_chacha_keys() -> None:
    # draft-irtf-cfrg-xchacha-03 §2.2.1
    key = bytes(range(32))
    nonce = bytes.fromhex("000000090000004a0000000031415927")
    assert hchacha20(key, nonce).hex() == (
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc")
    chacha = new_key("me", CHACHA20)
    assert decrypt(chacha, encrypt(chacha, b"x", b"c"), b"c") == b"x"


def test_key_encoding_round_trip_and_legacy_json() -> None:
    key = new_key("ab" * 32)
    decoded = decode_key(encode_key(key))
    assert decoded == key
    base64.b64decode(encode_key(key), validate=True)  # the file is base64 text
    legacy = json.dumps({"bytes": base64.b64encode(b"\x01" * 32).decode(), "algorithm": "",
                         "created_at": "2021-03-04T05:06:07.123456789Z",
                         "created_by": "cd" * 32}).encode()
    old = decode_key(legacy)
    assert (old.key, old.cipher, old.hmac_key, old.created_by) == (b"\x01" * 32, "AES256",
                                                                   None, "cd" * 32)
    assert format_time(old.created_at) == "2021-03-04T05:06:07.123456Z"
    for junk in (b"", b"not base64!", base64.b64encode(b"\x0a\x02\x0a"), b"{\"bytes\": 1}"):
        with pytest.raises(KeyFormatError):
            decode_key(junk)


def test_time_format_is_go_rfc3339_nano() -> None:
    t = datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, datetime.UTC)
    assert format_time(t) == "2024-01-02T03:04:05.123456Z"
    assert format_time(t.replace(microsecond=0)) == "2024-01-02T03:04:05Z"
    assert parse_time("2024-01-02T03:04:05.123456789Z") == t


def test_secret_key_repr_hides_material() -> None:
    key = SecretKey(os.urandom(32), hmac_key=os.urandom(32))
    assert key.key.hex() not in repr(key)
