"""Package format and streaming AEAD: sizes, round trips at every boundary, tampering."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.crypto.packages import (
    BLOCK_SIZE,
    ENCRYPTED_PACKAGE_SIZE,
    HEADER_SIZE,
    PACKAGE_OVERHEAD,
    PACKAGE_SIZE,
    PACKAGES_PER_BLOCK,
    decrypted_size,
    encrypted_size,
    package_count,
)
from gateway.crypto.stream import PackageDecryptor, PackageEncryptor, decrypt_bytes, encrypt_bytes
from gateway.objects.errors import ObjectTampered

KEY = bytes(range(32))
P, EP = PACKAGE_SIZE, ENCRYPTED_PACKAGE_SIZE
BOUNDARIES = [0, 1, 2, P - 1, P, P + 1, 2 * P, 3 * P - 1, 16 * P - 1, 16 * P, 16 * P + 1,
              32 * P, 33 * P + 17]


def test_constants_align_packages_with_erasure_blocks():
    assert (PACKAGE_SIZE, PACKAGE_OVERHEAD, ENCRYPTED_PACKAGE_SIZE) == (65536, 32, 65568)
    assert PACKAGES_PER_BLOCK == 16
    assert BLOCK_SIZE == 1_049_088 == 16 * 65568


@pytest.mark.parametrize(
    ("plain", "cipher"),
    [(0, 0), (1, 33), (P - 1, EP - 1), (P, EP), (P + 1, EP + 33), (16 * P, BLOCK_SIZE),
     (5 * 1024**3, 5 * 1024**3 // P * EP)],
)
def test_size_formulas(plain, cipher):
    assert encrypted_size(plain) == cipher
    assert decrypted_size(cipher) == plain


@pytest.mark.parametrize("bad", [1, 16, 32, EP + 1, EP + 32, 7 * EP + 5])
def test_decrypted_size_rejects_impossible_sizes(bad):
    with pytest.raises(ObjectTampered):
        decrypted_size(bad)


def test_size_formulas_are_inverse_over_a_sweep():
    for n in range(0, 3 * P + 200, 997):
        assert decrypted_size(encrypted_size(n)) == n
        assert package_count(n) == -(-n // P)
    with pytest.raises(ValueError):
        encrypted_size(-1)


def encrypt_chunked(plaintext: bytes, chunk: int, key: bytes = KEY) -> bytes:
    encryptor = PackageEncryptor(key)
    out = bytearray()
    for i in range(0, len(plaintext), chunk):
        produced = encryptor.update(plaintext[i : i + chunk])
        assert len(produced) % EP == 0  # only whole, non-final packages before finish
        out += produced
    out += encryptor.finish()
    assert encryptor.plaintext_size == len(plaintext)
    assert encryptor.ciphertext_size == len(out)
    return bytes(out)


def decrypt_chunked(ciphertext: bytes, chunk: int, key: bytes = KEY, **kw) -> bytes:
    decryptor = PackageDecryptor(key, **kw)
    out = bytearray()
    for i in range(0, len(ciphertext), chunk):
        out += decryptor.update(ciphertext[i : i + chunk])
    decryptor.finish()
    return bytes(out)


@pytest.mark.parametrize("size", BOUNDARIES)
def test_round_trip_at_boundaries(size):
    plaintext = os.urandom(size)
    ciphertext = encrypt_bytes(KEY, plaintext)
    assert len(ciphertext) == encrypted_size(size)
    assert decrypt_bytes(KEY, ciphertext) == plaintext
    if size >= 16:  # a short plaintext can occur in random bytes by chance
        assert plaintext not in ciphertext


@pytest.mark.parametrize("chunk", [1, 7, 4096, P - 1, P, P + 1, BLOCK_SIZE, 3 * P + 5])
def test_chunking_never_changes_the_result(chunk):
    size = 3 * P + 123
    plaintext = os.urandom(size)
    ciphertext = encrypt_chunked(plaintext, max(chunk, 4096) if size > 10**5 else chunk)
    assert len(ciphertext) == encrypted_size(size)
    assert decrypt_chunked(ciphertext, chunk) == plaintext


def test_encryptor_holds_back_at_most_one_package():
    encryptor = PackageEncryptor(KEY)
    assert encryptor.update(b"x" * P) == b""  # could be the final package
    assert len(encryptor.update(b"y")) == EP  # now the first one is certainly not final
    assert len(encryptor.finish()) == 1 + PACKAGE_OVERHEAD


def test_exact_multiple_ends_with_a_full_final_package():
    ciphertext = encrypt_bytes(KEY, b"z" * (2 * P))
    last_header = ciphertext[EP : EP + HEADER_SIZE]
    assert last_header[4] & 0x80 and not ciphertext[4] & 0x80
    assert decrypt_bytes(KEY, ciphertext) == b"z" * (2 * P)


def test_finished_encryptor_refuses_more():
    encryptor = PackageEncryptor(KEY)
    encryptor.finish()
    with pytest.raises(ValueError):
        encryptor.update(b"a")


# --- tampering ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def three_packages() -> tuple[bytes, bytes]:
    plaintext = os.urandom(2 * P + 1000)
    return plaintext, encrypt_bytes(KEY, plaintext)


def flip(data: bytes, index: int) -> bytes:
    out = bytearray(data)
    out[index] ^= 0x01
    return bytes(out)


@pytest.mark.parametrize(
    "index",
    [0, 1, 2, 3, 4, 10, 15, 16, 5000, EP - 17, EP - 1, EP + 4, 2 * EP + 2, -1],
    ids=["version", "cipher", "len-lo", "len-hi", "nonce-first", "nonce-mid", "nonce-last",
         "payload-first", "payload-mid", "tag-first", "tag-last", "pkg1-nonce", "final-len",
         "final-tag"],
)
def test_flipped_byte_is_detected(three_packages, index):
    _, ciphertext = three_packages
    with pytest.raises(ObjectTampered):
        decrypt_chunked(flip(ciphertext, index), 40_000)


def with_byte(data: bytes, index: int, value: int) -> bytes:
    return data[:index] + bytes([value]) + data[index + 1 :]


def test_flipping_the_final_flag_is_detected(three_packages):
    _, c = three_packages
    # first package claims to be final: its nonce changes, so its tag fails
    with pytest.raises(ObjectTampered):
        decrypt_bytes(KEY, with_byte(c, 4, c[4] | 0x80))
    # last (short) package claims not to be final
    final_flag_at = 2 * EP + 4
    with pytest.raises(ObjectTampered):
        decrypt_bytes(KEY, with_byte(c, final_flag_at, c[final_flag_at] & 0x7F))


def test_swapped_packages_are_detected(three_packages):
    _, c = three_packages
    with pytest.raises(ObjectTampered):
        decrypt_bytes(KEY, c[EP : 2 * EP] + c[:EP] + c[2 * EP :])


def test_dropped_middle_package_is_detected(three_packages):
    _, c = three_packages
    with pytest.raises(ObjectTampered):
        decrypt_bytes(KEY, c[:EP] + c[2 * EP :])


def test_truncated_final_package_is_detected(three_packages):
    _, c = three_packages
    with pytest.raises(ObjectTampered, match="truncated"):
        decrypt_bytes(KEY, c[: 2 * EP])  # the final package is missing entirely
    with pytest.raises(ObjectTampered, match="inside a package"):
        decrypt_bytes(KEY, c[:-5])  # cut inside it


def test_data_after_the_final_package_is_detected(three_packages):
    _, c = three_packages
    with pytest.raises(ObjectTampered):
        decrypt_bytes(KEY, c + c[-1033:])


def test_package_spliced_from_another_stream_is_detected(three_packages):
    _, c = three_packages
    same_key_other_stream = encrypt_bytes(KEY, os.urandom(2 * P + 1000))
    with pytest.raises(ObjectTampered, match="another stream"):
        decrypt_bytes(KEY, c[:EP] + same_key_other_stream[EP : 2 * EP] + c[2 * EP :])
    other_key_same_nonce = encrypt_bytes(os.urandom(32), os.urandom(2 * P + 1000),
                                         stream_nonce=c[4:16])
    with pytest.raises(ObjectTampered, match="authentication"):
        decrypt_bytes(KEY, c[:EP] + other_key_same_nonce[EP : 2 * EP] + c[2 * EP :])


def test_wrong_key_is_detected(three_packages):
    _, c = three_packages
    with pytest.raises(ObjectTampered):
        decrypt_bytes(os.urandom(32), c)


def test_mid_stream_decryption_needs_the_right_sequence(three_packages):
    plaintext, c = three_packages
    assert decrypt_chunked(c[EP:], 9999, first_sequence=1) == plaintext[P:]
    with pytest.raises(ObjectTampered):
        decrypt_chunked(c[EP:], 9999, first_sequence=0)
    with pytest.raises(ObjectTampered):
        decrypt_chunked(c[EP:], 9999, first_sequence=2)


def test_range_run_without_final_package_needs_expect_final_false(three_packages):
    plaintext, c = three_packages
    assert decrypt_chunked(c[:EP], 1000, expect_final=False) == plaintext[:P]
    with pytest.raises(ObjectTampered):
        decrypt_chunked(c[:EP], 1000)


def test_skip_and_keep_trim_the_plaintext(three_packages):
    plaintext, c = three_packages
    got = decrypt_chunked(c[EP:], 777, first_sequence=1, skip=100, keep=P)
    assert got == plaintext[P + 100 : 2 * P + 100]


def test_empty_stream_has_no_packages_and_a_decryptor_demands_one():
    assert encrypt_bytes(KEY, b"") == b""
    assert decrypt_bytes(KEY, b"") == b""
    with pytest.raises(ObjectTampered):
        PackageDecryptor(KEY).finish()


@settings(max_examples=60, deadline=None)
@given(
    size=st.integers(0, 3 * P + 10),
    cuts=st.lists(st.integers(1, 2 * EP), min_size=1, max_size=8),
)
def test_any_chunking_round_trips(size, cuts):
    plaintext = os.urandom(size)
    encryptor, ciphertext, pos, i = PackageEncryptor(KEY), bytearray(), 0, 0
    while pos < size:
        step = cuts[i % len(cuts)]
        ciphertext += encryptor.update(plaintext[pos : pos + step])
        pos, i = pos + step, i + 1
    ciphertext += encryptor.finish()
    assert bytes(ciphertext) == encrypt_bytes(KEY, plaintext, stream_nonce=encryptor.stream_nonce)
    if size == 0:
        return
    decryptor, out, pos, i = PackageDecryptor(KEY), bytearray(), 0, 0
    while pos < len(ciphertext):
        step = cuts[(i + 1) % len(cuts)]
        out += decryptor.update(ciphertext[pos : pos + step])
        pos, i = pos + step, i + 1
    decryptor.finish()
    assert out == plaintext
