"""Bitrot hashes of shard blocks: the algorithms of `proto.HashAlgorithm`, by enum value.

Every shard block is stored and sent behind its hash. The gateway hashes what it sends and
checks what it receives; the node checks on write and on read. Both sides use this module so
that they can never disagree about a digest.
"""

from __future__ import annotations

import hashlib

import xxhash

__all__ = ["HASH_UNSPECIFIED", "SHA256", "XXH3_128", "block_hash", "hash_len", "hash_name",
           "resolve_algorithm"]

# Values of the proto enum HashAlgorithm (kept here so that users need not import proto).
HASH_UNSPECIFIED = 0
XXH3_128 = 1
SHA256 = 2

_LENGTHS = {XXH3_128: 16, SHA256: 32}
_NAMES = {XXH3_128: "xxh3-128", SHA256: "sha256"}


def resolve_algorithm(algorithm: int) -> int:
    """The algorithm to record: HASH_UNSPECIFIED means the default (xxh3-128).

    Raises ValueError for a value this build does not know.
    """
    if algorithm == HASH_UNSPECIFIED:
        return XXH3_128
    if algorithm not in _LENGTHS:
        raise ValueError(f"unknown hash algorithm {algorithm}")
    return algorithm


def hash_len(algorithm: int) -> int:
    """Bytes of one block hash (16 for xxh3-128, 32 for SHA-256)."""
    return _LENGTHS[resolve_algorithm(algorithm)]


def hash_name(algorithm: int) -> str:
    return _NAMES[resolve_algorithm(algorithm)]


def block_hash(algorithm: int, data: bytes | memoryview) -> bytes:
    """The digest of one shard block (xxh3-128 in its canonical big-endian form)."""
    if algorithm in (XXH3_128, HASH_UNSPECIFIED):
        return xxhash.xxh3_128_digest(data)
    if algorithm == SHA256:
        return hashlib.sha256(data).digest()
    raise ValueError(f"unknown hash algorithm {algorithm}")
