"""Range maths: which packages (and erasure blocks) of which parts a plaintext range needs.

An object is one or more parts, each its own package stream starting at sequence 0 under
its own key. Because every non-final package holds exactly 64 KiB and an erasure block
holds exactly 16 packages, a plaintext offset maps to a package, a ciphertext offset and a
block by division alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from gateway.crypto.packages import (
    BLOCK_SIZE,
    ENCRYPTED_PACKAGE_SIZE,
    PACKAGE_SIZE,
    PACKAGES_PER_BLOCK,
    encrypted_size,
)

__all__ = ["PartSegment", "RangePlan", "plan_range"]


@dataclass(frozen=True)
class PartSegment:
    """The slice of one part that a range needs.

    Fetch `cipher_length` bytes at `cipher_offset` of the part's ciphertext (or
    `object_cipher_offset` in the concatenation of all parts' ciphertext), decrypt them from
    sequence number `first_package` with the part's key, drop `skip` plaintext bytes and
    deliver the next `keep`. `to_end` is true when the slice ends with the part's final
    package, which the decryptor must then see (PackageDecryptor(expect_final=to_end)).
    """

    part_index: int
    first_package: int
    last_package: int
    cipher_offset: int
    cipher_length: int
    object_cipher_offset: int
    skip: int
    keep: int
    to_end: bool

    @property
    def first_block(self) -> int:
        """Index of the part's erasure block holding the first package."""
        return self.first_package // PACKAGES_PER_BLOCK

    @property
    def last_block(self) -> int:
        """Index of the part's erasure block holding the last package."""
        return self.last_package // PACKAGES_PER_BLOCK

    @property
    def block_skip(self) -> int:
        """Ciphertext bytes at the start of `first_block` that precede the first package."""
        return self.cipher_offset - self.first_block * BLOCK_SIZE


@dataclass(frozen=True)
class RangePlan:
    """The segments, in order, that together deliver plaintext [offset, offset + length)."""

    offset: int
    length: int
    segments: tuple[PartSegment, ...]

    @property
    def cipher_span(self) -> tuple[int, int]:
        """[start, end) in the concatenated ciphertext of all parts ((0, 0) when empty)."""
        if not self.segments:
            return (0, 0)
        first, last = self.segments[0], self.segments[-1]
        return (first.object_cipher_offset, last.object_cipher_offset + last.cipher_length)


def plan_range(part_sizes: Sequence[int], offset: int, length: int) -> RangePlan:
    """Plans the read of plaintext [offset, offset + length) of an object.

    part_sizes: the plaintext size of each part in order (a single-part object is one part).
    The range must lie inside the object (the S3 layer resolves and rejects bad ranges).
    """
    total = sum(part_sizes)
    if min(part_sizes, default=0) < 0:
        raise ValueError("part sizes must not be negative")
    if offset < 0 or length < 0 or offset + length > total:
        raise ValueError(f"range {offset}+{length} outside an object of {total} bytes")
    segments: list[PartSegment] = []
    end = offset + length
    part_start = cipher_start = 0
    for index, size in enumerate(part_sizes):
        part_end = part_start + size
        if size and length and part_start < end and offset < part_end:
            segments.append(_segment(index, size, cipher_start, offset - part_start,
                                     min(end, part_end) - part_start))
        if part_start >= end:
            break
        part_start = part_end
        cipher_start += encrypted_size(size)
    return RangePlan(offset, length, tuple(segments))


def _segment(index: int, size: int, cipher_start: int, start: int, stop: int) -> PartSegment:
    """The segment of a part of `size` plaintext bytes covering local [start, stop)."""
    start = max(start, 0)
    first = start // PACKAGE_SIZE
    last = (stop - 1) // PACKAGE_SIZE
    part_cipher_size = encrypted_size(size)
    cipher_offset = first * ENCRYPTED_PACKAGE_SIZE
    cipher_end = min((last + 1) * ENCRYPTED_PACKAGE_SIZE, part_cipher_size)
    return PartSegment(
        part_index=index,
        first_package=first,
        last_package=last,
        cipher_offset=cipher_offset,
        cipher_length=cipher_end - cipher_offset,
        object_cipher_offset=cipher_start + cipher_offset,
        skip=start - first * PACKAGE_SIZE,
        keep=stop - start,
        to_end=cipher_end == part_cipher_size,
    )
