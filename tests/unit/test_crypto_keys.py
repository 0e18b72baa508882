"""Key hierarchy: sealing binds domain and path; SSE-C key mismatch; part keys; ETags."""

from __future__ import annotations

import hashlib
import hmac
import os

import pytest

from gateway.crypto.keys import (
    IV_SIZE,
    SEAL_ALGORITHM,
    SEALED_KEY_SIZE,
    SealedKey,
    derive_kek,
    new_object_key,
    new_part_nonce,
    part_key,
    random_etag,
    seal_etag,
    seal_object_key,
    unseal_etag,
    unseal_object_key,
)
from gateway.objects.errors import ObjectTampered, SSECKeyMismatch

EK = bytes(32)


def test_kek_is_minio_style_hmac_over_iv_domain_algorithm_path():
    iv = bytes(range(32))
    expected = hmac.digest(
        EK, iv + b"SSE-S3" + b"DAREv2-HMAC-SHA256" + b"photos/2024/a.jpg", hashlib.sha256
    )
    assert derive_kek(EK, iv, "SSE-S3", "photos", "2024/a.jpg") == expected


def test_seal_is_64_bytes_and_round_trips():
    oek = new_object_key()
    sealed = seal_object_key(oek, EK, domain="SSE-KMS", bucket="b", key="k")
    assert len(sealed.sealed) == SEALED_KEY_SIZE and len(sealed.iv) == IV_SIZE
    assert sealed.algorithm == SEAL_ALGORITHM
    assert oek not in sealed.sealed
    assert unseal_object_key(sealed, EK, domain="SSE-KMS", bucket="b", key="k") == oek


@pytest.mark.parametrize(
    ("domain", "bucket", "key"),
    [("SSE-S3", "b", "k"), ("SSE-KMS", "b", "k2"), ("SSE-KMS", "b2", "k"),
     ("SSE-KMS", "b", "k/"), ("SSE-KMS", "b/k", "")],
)
def test_resealed_with_wrong_path_or_domain_is_tampered(domain, bucket, key):
    sealed = seal_object_key(new_object_key(), EK, domain="SSE-KMS", bucket="b", key="k")
    with pytest.raises(ObjectTampered):
        unseal_object_key(sealed, EK, domain=domain, bucket=bucket, key=key)


def test_paths_are_not_cleaned_before_binding():
    sealed = seal_object_key(new_object_key(), EK, domain="SSE-S3", bucket="b", key="a//c")
    with pytest.raises(ObjectTampered):
        unseal_object_key(sealed, EK, domain="SSE-S3", bucket="b", key="a/c")


def test_wrong_customer_key_is_a_key_mismatch():
    customer = os.urandom(32)
    sealed = seal_object_key(new_object_key(), customer, domain="SSE-C", bucket="b", key="k")
    with pytest.raises(SSECKeyMismatch):
        unseal_object_key(sealed, os.urandom(32), domain="SSE-C", bucket="b", key="k")
    with pytest.raises(SSECKeyMismatch):  # right key, object moved under another name
        unseal_object_key(sealed, customer, domain="SSE-C", bucket="b", key="other")


def test_tampered_seal_fields_are_detected():
    oek = new_object_key()
    sealed = seal_object_key(oek, EK, domain="SSE-S3", bucket="b", key="k")
    flipped = bytearray(sealed.sealed)
    flipped[20] ^= 1
    for bad in (
        SealedKey(iv=sealed.iv, sealed=bytes(flipped)),
        SealedKey(iv=bytes(32), sealed=sealed.sealed),
        SealedKey(iv=sealed.iv, sealed=sealed.sealed[:63]),
        SealedKey(iv=sealed.iv, sealed=sealed.sealed, algorithm="DARE-SHA256"),
    ):
        with pytest.raises(ObjectTampered):
            unseal_object_key(bad, EK, domain="SSE-S3", bucket="b", key="k")


def test_part_keys_differ_per_part_and_per_upload():
    oek = new_object_key()
    n1, n2 = new_part_nonce(), new_part_nonce()
    assert n1 != n2  # a re-upload of the same part gets a new nonce ...
    assert part_key(oek, 1, n1) != part_key(oek, 1, n2)  # ... hence a new key
    assert part_key(oek, 1, n1) != part_key(oek, 2, n1)
    assert part_key(oek, 1, n1) == part_key(oek, 1, n1)
    with pytest.raises(ValueError):
        part_key(oek, 0, n1)
    with pytest.raises(ValueError):
        part_key(oek, 1, b"short")


def test_sealed_etag_round_trips_and_hides_the_md5():
    oek = new_object_key()
    md5 = hashlib.md5(b"hello").hexdigest()
    sealed = seal_etag(oek, md5)
    assert md5.encode() not in sealed and bytes.fromhex(md5) not in sealed
    assert unseal_etag(oek, sealed) == md5
    with pytest.raises(ObjectTampered):
        unseal_etag(new_object_key(), sealed)


def test_random_etag_looks_like_an_md5():
    etags = {random_etag() for _ in range(50)}
    assert len(etags) == 50
    assert all(len(e) == 32 and int(e, 16) >= 0 for e in etags)
