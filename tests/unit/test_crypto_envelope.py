"""The object layer's view: seal/open per mode, metadata, multipart, ranges, rotation."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from dataclasses import replace

import pytest

from gateway.crypto.cache import CachingKMS, DataKeyCacheConfig
from gateway.crypto.envelope import (
    ObjectEncryption,
    check_unencrypted_read,
    object_encryptor,
    part_encryptor,
    put_etag,
    segment_decryptor,
)
from gateway.crypto.keys import seal_etag, unseal_etag
from gateway.crypto.kms import DataKey, MemoryKMS
from gateway.crypto.metadata import EncryptionMetadata, is_encrypted
from gateway.crypto.packages import PACKAGE_SIZE
from gateway.crypto.ranges import plan_range
from gateway.crypto.rotation import rotate_object_key
from gateway.objects.api import SSECustomerKey, SSEParams
from gateway.objects.errors import (
    KMSInvalidCiphertext,
    KMSKeyNotFound,
    KMSNotConfigured,
    ObjectTampered,
    SSECKeyMismatch,
    SSECKeyRequired,
    SSENotApplicable,
)

P = PACKAGE_SIZE


def run(coro):
    return asyncio.run(coro)


def customer(key: bytes | None = None) -> SSECustomerKey:
    key = key or os.urandom(32)
    return SSECustomerKey(key, base64.b64encode(hashlib.md5(key).digest()).decode())


class RecordingKMS(MemoryKMS):
    """Remembers every plaintext data key and context it handed out."""

    def __init__(self) -> None:
        super().__init__(keys=["k1", "k2"])
        self.plaintexts: list[bytes] = []
        self.contexts: list[bytes] = []

    async def generate_key(self, key_id: str, context: bytes) -> DataKey:
        data_key = await super().generate_key(key_id, context)
        self.plaintexts.append(data_key.plaintext)
        self.contexts.append(context)
        return data_key


def encrypt(object_key: bytes, plaintext: bytes) -> bytes:
    encryptor = object_encryptor(object_key)
    return bytes(encryptor.update(plaintext) + encryptor.finish())


def read_range(object_key, metadata, part_sizes, ciphertexts, offset, length) -> bytes:
    out = bytearray()
    for seg in plan_range(part_sizes, offset, length).segments:
        part = ciphertexts[seg.part_index]
        decryptor = segment_decryptor(object_key, metadata, seg)
        out += decryptor.update(part[seg.cipher_offset : seg.cipher_offset + seg.cipher_length])
        decryptor.finish()
    return bytes(out)


def stored_secrets_absent(metadata: EncryptionMetadata, *secrets: bytes) -> None:
    blob = repr(metadata.to_dict()).encode()
    for secret in secrets:
        assert secret not in blob
        assert base64.b64encode(secret) not in blob
        assert secret.hex().encode() not in blob
    assert "object_key" not in repr(metadata)


@pytest.mark.parametrize("scope", ["object", "bucket"])
@pytest.mark.parametrize(
    "sse", [SSEParams("SSE-S3"), SSEParams("SSE-KMS", "k1", {"team": "blue"}),
            SSEParams("SSE-KMS")], ids=["sse-s3", "sse-kms-ctx", "sse-kms-default"],
)
def test_kms_modes_round_trip_and_store_no_plaintext_key(sse, scope):
    kms = RecordingKMS()
    enc = ObjectEncryption(kms, scope=scope)
    plaintext = os.urandom(2 * P + 3)

    async def go():
        sealed = await enc.seal_new(sse, "bkt", "dir/obj")
        stored = EncryptionMetadata.from_dict(sealed.metadata.to_dict())
        assert stored == sealed.metadata
        stored_secrets_absent(stored, sealed.object_key, *kms.plaintexts)
        ciphertext = encrypt(sealed.object_key, plaintext)
        object_key = await enc.open(stored, "bkt", "dir/obj")
        assert read_range(object_key, stored, [len(plaintext)], [ciphertext], 0,
                          len(plaintext)) == plaintext
        return stored

    stored = run(go())
    assert stored.kms_key_id == (sse.kms_key_id or "tessera-default")
    info = stored.info()
    assert info.mode == sse.mode
    if sse.kms_context:
        assert base64.b64decode(info.kms_context_b64) == b'{"team":"blue"}'
        bucket_entry = b'"bkt":"bkt/dir/obj"' if scope == "object" else b'"bkt":"bkt"'
        assert kms.contexts == [b"{" + bucket_entry + b',"team":"blue"}']
    else:
        assert info.kms_context_b64 is None


def test_sse_c_never_calls_the_kms_and_checks_the_key():
    kms = MemoryKMS()
    enc = ObjectEncryption(kms)
    key = customer()

    async def go():
        sealed = await enc.seal_new(SSEParams("SSE-C", customer_key=key), "b", "k")
        stored = EncryptionMetadata.from_dict(sealed.metadata.to_dict())
        stored_secrets_absent(stored, sealed.object_key, key.key, key.key_md5.encode())
        assert await enc.open(stored, "b", "k", customer_key=key) == sealed.object_key
        with pytest.raises(SSECKeyMismatch):
            await enc.open(stored, "b", "k", customer_key=customer())
        with pytest.raises(SSECKeyRequired):
            await enc.open(stored, "b", "k")
        assert stored.info().mode == "SSE-C" and stored.info().kms_key_id is None

    run(go())
    assert sum(kms.calls.values()) == 0
    # SSE-C works without any KMS configured
    run(ObjectEncryption(None).seal_new(SSEParams("SSE-C", customer_key=key), "b", "k"))


def test_errors_on_open_and_seal():
    enc = ObjectEncryption(MemoryKMS())

    async def go():
        sealed = await enc.seal_new(SSEParams("SSE-S3"), "b", "k")
        with pytest.raises(SSENotApplicable):
            await enc.open(sealed.metadata, "b", "k", customer_key=customer())
        with pytest.raises(KMSKeyNotFound):
            await enc.seal_new(SSEParams("SSE-KMS", "missing"), "b", "k")
        with pytest.raises(KMSNotConfigured):
            await ObjectEncryption(None).seal_new(SSEParams("SSE-S3"), "b", "k")
        with pytest.raises(KMSNotConfigured):
            await ObjectEncryption(None).open(sealed.metadata, "b", "k")

    run(go())
    check_unencrypted_read(None)
    with pytest.raises(SSENotApplicable):
        check_unencrypted_read(customer())


@pytest.mark.parametrize(("scope", "error"), [("object", KMSInvalidCiphertext),
                                              ("bucket", ObjectTampered)])
def test_metadata_moved_to_another_name_does_not_open(scope, error):
    enc = ObjectEncryption(MemoryKMS(), scope=scope)

    async def go():
        sealed = await enc.seal_new(SSEParams("SSE-S3"), "b", "k")
        with pytest.raises(error):
            await enc.open(sealed.metadata, "b", "k-copy")

    run(go())


def test_multipart_parts_reupload_ranges_and_splices():
    enc = ObjectEncryption(MemoryKMS())
    sizes = [2 * P + 10, 3 * P, 5]
    parts = [os.urandom(n) for n in sizes]

    async def go():
        sealed = await enc.seal_new(SSEParams("SSE-S3"), "b", "mp", multipart=True)
        assert sealed.metadata.multipart
        uploads = {}
        first_try = None
        for number, data in zip((1, 2, 3), parts, strict=True):
            if number == 2:  # a first upload of part 2 with other bytes, then a retry
                encryptor, nonce = part_encryptor(sealed.object_key, 2)
                stale = os.urandom(len(data))
                first_try = (nonce, bytes(encryptor.update(stale) + encryptor.finish()))
            encryptor, nonce = part_encryptor(sealed.object_key, number)
            uploads[number] = (nonce, bytes(encryptor.update(data) + encryptor.finish()))
        assert first_try[0] != uploads[2][0]  # fresh nonce per upload of a part number
        stored = replace(sealed.metadata,
                         part_nonces=tuple((n, uploads[n][0]) for n in (1, 2, 3)))
        stored = EncryptionMetadata.from_dict(stored.to_dict())
        object_key = await enc.open(stored, "b", "mp")
        ciphertexts = [uploads[n][1] for n in (1, 2, 3)]
        whole = b"".join(parts)
        for offset, length in [(0, len(whole)), (P - 1, 2 * P + 20), (len(whole) - 6, 6),
                               (2 * P + 10, 3 * P), (2 * P + 9, 2)]:
            assert read_range(object_key, stored, sizes, ciphertexts, offset, length) == \
                whole[offset : offset + length]
        # a stale upload of part 2 spliced in is detected
        with pytest.raises(ObjectTampered):
            read_range(object_key, stored, sizes, [ciphertexts[0], first_try[1],
                                                   ciphertexts[2]], 0, len(whole))
        # parts swapped is detected
        with pytest.raises(ObjectTampered):
            read_range(object_key, stored, [sizes[1], sizes[0], 5],
                       [ciphertexts[1], ciphertexts[0], ciphertexts[2]], 0, len(whole))
        # a part of another object is detected
        other = await enc.seal_new(SSEParams("SSE-S3"), "b", "other", multipart=True)
        encryptor, nonce = part_encryptor(other.object_key, 3)
        foreign = bytes(encryptor.update(parts[2]) + encryptor.finish())
        with pytest.raises(ObjectTampered):
            read_range(object_key, stored, sizes, [*ciphertexts[:2], foreign], 0, len(whole))

    run(go())


@pytest.mark.parametrize(
    "mutate",
    [
        lambda d: d.pop("sse-iv"),
        lambda d: d.update({"sse-mode": "SSE-X"}),
        lambda d: d.update({"sse-iv": "****"}),
        lambda d: d.update({"sse-sealed-key": base64.b64encode(b"x" * 63).decode()}),
        lambda d: d.update({"sse-kms-key-id": ""}),
        lambda d: d.update({"sse-context-scope": "galaxy"}),
        lambda d: d.update({"sse-kms-context": base64.b64encode(b"[1]").decode()}),
        lambda d: d.update({"sse-part-nonces": base64.b64encode(b"\0" * 21).decode()}),
        lambda d: d.update({"sse-part-nonces": base64.b64encode(
            (2).to_bytes(4, "little") + b"n" * 16 + (1).to_bytes(4, "little") + b"m" * 16
        ).decode()}),
    ],
)
def test_malformed_metadata_is_tampered(mutate):
    sealed = run(ObjectEncryption(MemoryKMS()).seal_new(SSEParams("SSE-S3"), "b", "k"))
    data = sealed.metadata.to_dict()
    mutate(data)
    with pytest.raises(ObjectTampered):
        EncryptionMetadata.from_dict(data)


def test_sse_c_metadata_with_kms_fields_is_tampered():
    sealed = run(ObjectEncryption(None).seal_new(
        SSEParams("SSE-C", customer_key=customer()), "b", "k"))
    data = {**sealed.metadata.to_dict(), "sse-kms-ciphertext": "AAAA"}
    assert is_encrypted(data) and not is_encrypted({"content-type": "x"})
    with pytest.raises(ObjectTampered):
        EncryptionMetadata.from_dict(data)


def test_rotation_reseals_without_touching_data():
    kms = MemoryKMS(keys=["k1", "k2"])
    enc = ObjectEncryption(kms)
    plaintext = os.urandom(P + 1)

    async def go():
        sealed = await enc.seal_new(SSEParams("SSE-S3"), "b", "k")
        meta = replace(sealed.metadata, sealed_etag=seal_etag(sealed.object_key, "e" * 32))
        ciphertext = encrypt(sealed.object_key, plaintext)
        rotated = await rotate_object_key(enc, meta, "b", "k", SSEParams("SSE-KMS", "k2"))
        assert (rotated.mode, rotated.kms_key_id) == ("SSE-KMS", "k2")
        assert rotated.kms_ciphertext != meta.kms_ciphertext
        assert rotated.sealed_key != meta.sealed_key
        object_key = await enc.open(EncryptionMetadata.from_dict(rotated.to_dict()), "b", "k")
        assert object_key == sealed.object_key
        assert unseal_etag(object_key, rotated.sealed_etag) == "e" * 32
        assert read_range(object_key, rotated, [len(plaintext)], [ciphertext], 0,
                          len(plaintext)) == plaintext
        with pytest.raises(KMSKeyNotFound):
            await rotate_object_key(enc, meta, "b", "k", SSEParams("SSE-KMS", "nope"))

        old, new = customer(), customer()
        c_sealed = await enc.seal_new(SSEParams("SSE-C", customer_key=old), "b", "c")
        c_rotated = await rotate_object_key(
            enc, c_sealed.metadata, "b", "c", SSEParams("SSE-C", customer_key=new),
            customer_key=old)
        assert await enc.open(c_rotated, "b", "c", customer_key=new) == c_sealed.object_key
        with pytest.raises(SSECKeyMismatch):
            await enc.open(c_rotated, "b", "c", customer_key=old)
        with pytest.raises(SSECKeyMismatch):
            await rotate_object_key(enc, c_sealed.metadata, "b", "c",
                                    SSEParams("SSE-C", customer_key=new), customer_key=new)

    run(go())


def test_bucket_scope_with_cache_makes_kms_calls_per_data_key_not_per_object():
    inner = MemoryKMS()

    async def go(scope):
        config = DataKeyCacheConfig(generate=scope == "bucket")
        enc = ObjectEncryption(CachingKMS(inner, config), scope=scope)
        sealed = [await enc.seal_new(SSEParams("SSE-S3"), "b", f"k{i}") for i in range(50)]
        for s, i in zip(sealed, range(50), strict=True):
            assert await enc.open(s.metadata, "b", f"k{i}") == s.object_key
        restarted = ObjectEncryption(CachingKMS(inner, config), scope=scope)  # a fresh gateway
        for s, i in zip(sealed, range(50), strict=True):
            assert await restarted.open(s.metadata, "b", f"k{i}") == s.object_key
        return sealed

    sealed = run(go("bucket"))
    assert (inner.calls["generate"], inner.calls["decrypt"]) == (1, 1)
    assert len({s.object_key for s in sealed}) == 50  # still one object key per object
    inner.calls.clear()
    run(go("object"))
    assert (inner.calls["generate"], inner.calls["decrypt"]) == (50, 50)


def test_put_etag_rules():
    assert put_etag("SSE-S3", "ab" * 16) == "ab" * 16
    with pytest.raises(ValueError):
        put_etag("SSE-S3", None)
    kms_etag = put_etag("SSE-KMS", None)
    assert len(kms_etag) == 32 and kms_etag != put_etag("SSE-C", None)
