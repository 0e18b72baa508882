"""Erasure maths: block and shard geometry, zfec encode/decode, per-shard-block bitrot hashes.

An object's byte stream (ciphertext when encrypted) is cut into blocks of `block_size` bytes (the
last one short). Each block is split into `k` equal data shards (zero-padded to a multiple of k)
and `m` parity shards. zfec is systematic: shards 0..k-1 are the data itself, so a healthy read
is a join and only a missing data shard costs a decode. Every function here is pure and
thread-safe; callers run them in a worker thread (zfec and the hashes release the GIL).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import zfec

from common import bitrot

__all__ = [
    "BLOCK_SIZE",
    "DARE_PACKAGE_SIZE",
    "HASH_SHA256",
    "HASH_XXH3_128",
    "ErasureError",
    "Geometry",
    "block_hash",
    "decode_block",
    "encode_block",
    "encode_views",
    "reconstruct_shards",
    "tune_malloc",
]

# A DARE package of 64 KiB plaintext is 65,568 bytes of ciphertext; 16 of them fill a block,
# so a range read fetches whole stripes and decrypts whole packages. Used for every object.
DARE_PACKAGE_SIZE = 65_568
BLOCK_SIZE = 16 * DARE_PACKAGE_SIZE  # 1,049,088

HASH_XXH3_128 = "xxh3-128"
HASH_SHA256 = "sha256"
# by name as recorded in the metadata; the node computes the same digests (common/bitrot.py)
_HASHERS = {
    HASH_XXH3_128: lambda data: bitrot.block_hash(bitrot.XXH3_128, data),
    HASH_SHA256: lambda data: bitrot.block_hash(bitrot.SHA256, data),
}


class ErasureError(ValueError):
    """Shards cannot be encoded or decoded as asked (too few, wrong sizes). Not retryable."""


def block_hash(algorithm: str, data: bytes | memoryview) -> bytes:
    """The bitrot hash of one shard block under the recorded algorithm."""
    try:
        return _HASHERS[algorithm](data)
    except KeyError:
        raise ErasureError(f"unknown bitrot hash algorithm {algorithm!r}") from None


@dataclass(frozen=True)
class Geometry:
    """Erasure geometry of one object version (every part shares it)."""

    data_shards: int  # k
    parity_shards: int  # m
    block_size: int = BLOCK_SIZE
    hash_algorithm: str = HASH_XXH3_128

    def __post_init__(self) -> None:
        if self.data_shards < 1 or self.parity_shards < 0:
            raise ErasureError(f"bad geometry {self.data_shards}+{self.parity_shards}")
        if self.data_shards + self.parity_shards > 256:
            raise ErasureError("zfec supports at most 256 shards")
        if self.hash_algorithm not in _HASHERS:
            raise ErasureError(f"unknown bitrot hash algorithm {self.hash_algorithm!r}")

    @property
    def total_shards(self) -> int:
        return self.data_shards + self.parity_shards

    @property
    def shard_block_size(self) -> int:
        """Bytes of each shard for a full block."""
        return -(-self.block_size // self.data_shards)

    def shard_length(self, block_length: int) -> int:
        """Bytes of each shard for a block of `block_length` bytes."""
        return -(-block_length // self.data_shards)

    def block_count(self, size: int) -> int:
        return -(-size // self.block_size)

    def block_length(self, size: int, index: int) -> int:
        """Bytes of block `index` of a stream of `size` bytes."""
        return min(self.block_size, size - index * self.block_size)

    def shard_size(self, size: int) -> int:
        """Bytes each node stores for a stream of `size` bytes (hashes excluded)."""
        full, rest = divmod(size, self.block_size)
        return full * self.shard_block_size + self.shard_length(rest)

    def blocks_for_range(self, start: int, length: int) -> tuple[int, int]:
        """First block and number of blocks covering bytes [start, start + length)."""
        if length <= 0:
            return start // self.block_size, 0
        first = start // self.block_size
        last = (start + length - 1) // self.block_size
        return first, last - first + 1


@functools.lru_cache(maxsize=64)
def _encoder(k: int, n: int) -> zfec.Encoder:
    return zfec.Encoder(k, n)


@functools.lru_cache(maxsize=64)
def _decoder(k: int, n: int) -> zfec.Decoder:
    return zfec.Decoder(k, n)


def _data_shards(geometry: Geometry, block: bytes | memoryview) -> tuple[memoryview, ...]:
    """Views of the k data shards in `block` (a short block is zero-padded into a copy)."""
    k = geometry.data_shards
    length = geometry.shard_length(len(block))
    pad = k * length - len(block)
    view = memoryview(bytes(block) + bytes(pad) if pad else block)
    return tuple(view[i * length : (i + 1) * length] for i in range(k))


def encode_views(geometry: Geometry, block: bytes | memoryview) -> list[bytes | memoryview]:
    """All k+m shards of one block, data shards first, the data shards as views of `block`
    (no copy: zfec reads them in place, the PUT path sends them as they are). An empty
    block gives empty shards."""
    k, n = geometry.data_shards, geometry.total_shards
    if not block:
        return [b""] * n
    data = _data_shards(geometry, block)
    if n == k:
        return list(data)
    return [*data, *_encoder(k, n).encode(data, tuple(range(k, n)))]


def encode_block(geometry: Geometry, block: bytes) -> list[bytes]:
    """All k+m shards of one block as bytes (data shards first)."""
    return [bytes(s) for s in encode_views(geometry, block)]


def _primary_shards(geometry: Geometry, shards: Mapping[int, bytes]) -> list[bytes]:
    k, n = geometry.data_shards, geometry.total_shards
    if all(i in shards for i in range(k)):
        return [shards[i] for i in range(k)]
    if len(shards) < k:
        raise ErasureError(f"need {k} shards to decode, have {len(shards)}")
    chosen = sorted(shards)[:k]
    lengths = {len(shards[i]) for i in chosen}
    if len(lengths) != 1:
        raise ErasureError(f"shards of one block differ in length: {sorted(lengths)}")
    if lengths == {0}:
        return [b""] * k
    out = _decoder(k, n).decode(tuple(shards[i] for i in chosen), tuple(chosen))
    return [bytes(b) for b in out]


def decode_block(geometry: Geometry, shards: Mapping[int, bytes], block_length: int) -> bytes:
    """The block from any k of its shards (a join when the data shards are all present)."""
    if block_length == 0:
        return b""
    data = b"".join(_primary_shards(geometry, shards))
    if len(data) < block_length:
        raise ErasureError(f"shards hold {len(data)} bytes, block needs {block_length}")
    return data[:block_length] if len(data) != block_length else data


def reconstruct_shards(
    geometry: Geometry, shards: Mapping[int, bytes], wanted: Sequence[int]
) -> dict[int, bytes]:
    """Re-create only the shards named in `wanted` from any k others (healing)."""
    k, n = geometry.data_shards, geometry.total_shards
    primary = _primary_shards(geometry, shards)
    out: dict[int, bytes] = {}
    parity_wanted = tuple(i for i in wanted if i >= k)
    for i in wanted:
        if not 0 <= i < n:
            raise ErasureError(f"shard index {i} outside 0..{n - 1}")
        if i < k:
            out[i] = primary[i]
    if parity_wanted and not primary[0]:
        out.update({i: b"" for i in parity_wanted})  # an empty block has empty parity
    elif parity_wanted:
        parity = _encoder(k, n).encode(tuple(primary), parity_wanted)
        out.update({i: bytes(p) for i, p in zip(parity_wanted, parity, strict=True)})
    return out


_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3


def tune_malloc(mmap_threshold: int = 64 * 1024**2, trim_threshold: int = 256 * 1024**2) -> bool:
    """Keep glibc from mmap/munmap-ing every large buffer zfec allocates (PERFORMANCE.md trap).

    The same effect as MALLOC_MMAP_THRESHOLD_/MALLOC_TRIM_THRESHOLD_, applied in-process with
    mallopt() so no re-exec is needed; both are needed (the first alone is slower). Measured:
    zfec 4+2 encode of 1 MiB blocks 2-2.4x faster. Returns False where it does not apply.
    """
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    ok = mallopt(_M_MMAP_THRESHOLD, mmap_threshold) == 1
    return bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold) == 1 and ok)
