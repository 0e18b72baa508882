"""Range maths against a plaintext oracle: every package and block boundary, multi-part."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gateway.crypto.packages import BLOCK_SIZE, ENCRYPTED_PACKAGE_SIZE, PACKAGE_SIZE
from gateway.crypto.ranges import plan_range
from gateway.crypto.stream import PackageDecryptor, encrypt_bytes

P = PACKAGE_SIZE


@dataclass
class Stored:
    """An object as the erasure layer would hold it: per-part ciphertext and keys."""

    part_sizes: list[int]
    keys: list[bytes]
    ciphertexts: list[bytes]
    plaintext: bytes

    def read(self, offset: int, length: int) -> bytes:
        plan = plan_range(self.part_sizes, offset, length)
        whole = b"".join(self.ciphertexts)
        out = bytearray()
        for seg in plan.segments:
            part = self.ciphertexts[seg.part_index]
            fetched = part[seg.cipher_offset : seg.cipher_offset + seg.cipher_length]
            assert len(fetched) == seg.cipher_length
            assert whole[seg.object_cipher_offset : seg.object_cipher_offset
                         + seg.cipher_length] == fetched
            # the fetched packages lie inside whole erasure blocks of the part
            assert seg.first_block * BLOCK_SIZE + seg.block_skip == seg.cipher_offset
            assert seg.cipher_offset + seg.cipher_length <= (seg.last_block + 1) * BLOCK_SIZE
            assert seg.cipher_offset % ENCRYPTED_PACKAGE_SIZE == 0
            decryptor = PackageDecryptor(
                self.keys[seg.part_index], first_sequence=seg.first_package, skip=seg.skip,
                keep=seg.keep, expect_final=seg.to_end,
            )
            out += decryptor.update(fetched)
            decryptor.finish()
        return bytes(out)


def make_object(part_sizes: list[int]) -> Stored:
    keys = [os.urandom(32) for _ in part_sizes]
    parts = [os.urandom(n) for n in part_sizes]
    ciphertexts = [encrypt_bytes(k, p) for k, p in zip(keys, parts, strict=True)]
    return Stored(part_sizes, keys, ciphertexts, b"".join(parts))


@pytest.fixture(scope="module")
def single() -> Stored:
    return make_object([33 * P + 17])  # three erasure blocks, a short final package


@pytest.fixture(scope="module")
def multi() -> Stored:
    return make_object([3 * P + 5, 16 * P, 1, 17 * P - 1, 0, 2 * P])


def boundary_offsets(total: int) -> list[int]:
    points = {0, total - 1}
    for k in range(0, total // P + 2):
        for d in (-1, 0, 1):
            points.add(k * P + d)
    return sorted(p for p in points if 0 <= p < total)


def test_every_package_boundary_single_part(single):
    total = len(single.plaintext)
    starts = boundary_offsets(total)
    for start in starts:
        for candidate in (start, start + 1, *[e for e in starts if e > start][:3], total - 1):
            end = min(candidate, total - 1)
            got = single.read(start, end - start + 1)
            assert got == single.plaintext[start : end + 1], (start, end)


def test_every_part_and_package_boundary_multipart(multi):
    total = len(multi.plaintext)
    cuts, edge = [0], 0
    for size in multi.part_sizes:
        edge += size
        cuts.append(edge)
    points = sorted({c + d for c in cuts for d in (-P - 1, -P, -1, 0, 1, P)
                     if 0 <= c + d < total})
    for start in points:
        for end in points:
            if end >= start:
                assert multi.read(start, end - start + 1) == multi.plaintext[start : end + 1]


def test_whole_object_and_empty_range(multi):
    total = len(multi.plaintext)
    assert multi.read(0, total) == multi.plaintext
    assert plan_range(multi.part_sizes, 5, 0).segments == ()
    assert plan_range([], 0, 0).cipher_span == (0, 0)


@pytest.mark.parametrize(("offset", "length"), [(-1, 1), (0, -1), (10, 10**9)])
def test_out_of_object_ranges_are_rejected(offset, length):
    with pytest.raises(ValueError):
        plan_range([100, 200], offset, length)


def test_plan_for_one_byte_in_the_middle_of_block_two():
    offset = 2 * 16 * P + 5 * P + 7  # block 2, package 37, byte 7
    plan = plan_range([40 * P], offset, 1)
    (seg,) = plan.segments
    assert (seg.first_package, seg.last_package, seg.skip, seg.keep) == (37, 37, 7, 1)
    assert seg.cipher_offset == 37 * ENCRYPTED_PACKAGE_SIZE
    assert seg.cipher_length == ENCRYPTED_PACKAGE_SIZE
    assert (seg.first_block, seg.last_block) == (2, 2)
    assert seg.block_skip == 5 * ENCRYPTED_PACKAGE_SIZE
    assert not seg.to_end


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_ranges_match_the_oracle(single, multi, data):
    stored = data.draw(st.sampled_from([single, multi]))
    total = len(stored.plaintext)
    offset = data.draw(st.integers(0, total - 1))
    length = data.draw(st.integers(1, total - offset))
    assert stored.read(offset, length) == stored.plaintext[offset : offset + length]
