"""Checks of everything a request names: buckets, keys, ids, geometry. InvalidArgument else."""

from __future__ import annotations

import re

from common import bitrot
from proto import storage_pb2 as pb

from .errors import InvalidArgument
from .records import Geometry

__all__ = [
    "MAX_INLINE",
    "MAX_META",
    "MAX_SHARD_BLOCK",
    "bucket_name",
    "geometry",
    "meta_blob",
    "object_key",
    "part_number",
    "token",
    "version_id",
]

MAX_SHARD_BLOCK = 16 * 1024 * 1024
MAX_INLINE = 4 * 1024 * 1024
MAX_META = 8 * 1024 * 1024
MAX_KEY_BYTES = 1024

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_VERSION = re.compile(r"^[0-9a-f-]{1,64}$")  # UUIDv7 text: lexicographic order = time order
_TOKEN = re.compile(r"^[A-Za-z0-9._~+=-]{1,128}$")  # data ids, upload ids


def bucket_name(name: str) -> str:
    if not _BUCKET.match(name) or ".." in name:
        raise InvalidArgument(f"invalid bucket name {name!r}")
    return name


def object_key(key: str) -> str:
    if not key:
        raise InvalidArgument("empty object key")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidArgument(f"object key longer than {MAX_KEY_BYTES} bytes")
    return key


def version_id(value: str) -> str:
    if not _VERSION.match(value):
        raise InvalidArgument(f"invalid version id {value!r} (lower-case UUID text expected)")
    return value


def token(value: str, what: str) -> str:
    if not _TOKEN.match(value):
        raise InvalidArgument(f"invalid {what} {value!r}")
    return value


def part_number(value: int) -> int:
    """Part numbers are 1..10000; 0 (unset) means 1, the only part of a single PUT."""
    if value == 0:
        return 1
    if value > 10_000:
        raise InvalidArgument(f"part number {value} out of range 1..10000")
    return value


def meta_blob(value: bytes) -> bytes:
    if len(value) > MAX_META:
        raise InvalidArgument(f"metadata larger than {MAX_META} bytes")
    return value


def geometry(msg: pb.Geometry, shard_index: int) -> Geometry:
    """The geometry of a request, checked against itself and the shard index."""
    k, m = msg.data_shards, msg.parity_shards
    if k < 1 or k + m > 256:
        raise InvalidArgument(f"bad geometry: {k} data + {m} parity shards")
    if not 1 <= msg.shard_block_size <= MAX_SHARD_BLOCK:
        raise InvalidArgument(f"bad geometry: shard_block_size {msg.shard_block_size}")
    if msg.block_size < 1 or -(-msg.block_size // k) != msg.shard_block_size:
        raise InvalidArgument(f"bad geometry: shard_block_size {msg.shard_block_size} is not "
                              f"ceil(block_size {msg.block_size} / {k})")
    if shard_index >= k + m:
        raise InvalidArgument(f"shard index {shard_index} outside {k}+{m} shards")
    try:
        algorithm = bitrot.resolve_algorithm(msg.hash)
    except ValueError as exc:
        raise InvalidArgument(f"bad geometry: {exc}") from None
    return Geometry(k, m, msg.block_size, msg.shard_block_size, algorithm)
