"""Where an object lives: its erasure set, the node of each shard, and the set's quorums.

An object's set and the rotation of its shards inside the set come from one stable hash of
`bucket/key` (BLAKE2b, never Python's salted `hash()`), so every gateway computes the same
placement. The placement used for a version is also recorded in its metadata; reads trust the
record (and each node's own shard index), never a recomputation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass, replace

from common.topology import Topology

__all__ = [
    "STORAGE_CLASS_ENV",
    "ErasureSet",
    "Placement",
    "PlacementError",
    "default_parity",
    "object_hash",
    "parity_from_env",
    "parse_storage_class",
    "read_quorum",
    "upgraded_parity",
    "write_quorum",
]

STORAGE_CLASS_ENV = "MINIO_STORAGE_CLASS_STANDARD"


class PlacementError(ValueError):
    """The configured parity does not fit the topology (not retryable)."""


def object_hash(bucket: str, key: str) -> int:
    """A stable 128-bit hash of `bucket/key`, the same on every gateway and every run."""
    digest = hashlib.blake2b(f"{bucket}/{key}".encode(), digest_size=16).digest()
    return int.from_bytes(digest, "big")


def default_parity(set_size: int) -> int:
    """MinIO's default STANDARD parity for a set size (EC:2 for 4-5, EC:3 for 6-7, EC:4 for 8+)."""
    if set_size <= 1:
        return 0
    if set_size <= 3:
        return 1
    if set_size <= 5:
        return 2
    if set_size <= 7:
        return 3
    return 4


def parse_storage_class(value: str) -> int:
    """The parity of a MinIO storage-class value `EC:n`."""
    text = value.strip()
    prefix, _, number = text.partition(":")
    if prefix.upper() != "EC" or not number.isdigit():
        raise PlacementError(f"storage class {value!r}: expected EC:<parity>, e.g. EC:2")
    return int(number)


def parity_from_env(environ: Mapping[str, str] = os.environ) -> int | None:
    """Parity from MINIO_STORAGE_CLASS_STANDARD, or None when unset (use the default)."""
    value = environ.get(STORAGE_CLASS_ENV, "").strip()
    return parse_storage_class(value) if value else None


def write_quorum(data_shards: int, parity_shards: int) -> int:
    """k when k > m, else k + 1 (so two disjoint writers can never both reach quorum)."""
    return data_shards if data_shards > parity_shards else data_shards + 1


def read_quorum(data_shards: int) -> int:
    return data_shards


def upgraded_parity(set_size: int, parity: int, offline: int) -> int:
    """The parity of a new object when `offline` nodes of its set are known down: one more
    parity shard per offline node, at most half the set (so data shards >= parity shards,
    MinIO's cap), never less than configured. See docs/design/erasure-and-quorum.md."""
    return max(parity, min(parity + max(offline, 0), set_size // 2))


@dataclass(frozen=True)
class ErasureSet:
    """The nodes of one object's set, in shard order: `nodes[i]` holds shard i."""

    index: int
    nodes: tuple[str, ...]
    data_shards: int
    parity_shards: int

    @property
    def size(self) -> int:
        return len(self.nodes)

    @property
    def write_quorum(self) -> int:
        return write_quorum(self.data_shards, self.parity_shards)

    @property
    def read_quorum(self) -> int:
        return read_quorum(self.data_shards)

    def upgraded(self, offline: int) -> ErasureSet:
        """The same nodes in the same shard order, with the parity a new object gets while
        `offline` of them are down (upgraded_parity); self when nothing changes."""
        parity = upgraded_parity(self.size, self.parity_shards, offline)
        if parity == self.parity_shards:
            return self
        return replace(self, data_shards=self.size - parity, parity_shards=parity)

    def with_geometry(self, data_shards: int, parity_shards: int) -> ErasureSet:
        """The same nodes with an existing object's (or upload's) recorded geometry."""
        if data_shards + parity_shards != self.size:
            raise PlacementError(f"geometry {data_shards}+{parity_shards} does not fit a set "
                                 f"of {self.size} nodes")
        return replace(self, data_shards=data_shards, parity_shards=parity_shards)


class Placement:
    """Maps objects to erasure sets and shard rotations for one topology and parity."""

    def __init__(self, topology: Topology, parity: int | None = None):
        size = topology.set_size
        parity = default_parity(size) if parity is None else parity
        if parity < 0 or parity > size // 2:
            raise PlacementError(
                f"parity EC:{parity} does not fit sets of {size} nodes (0..{size // 2})"
            )
        if size - parity < 1:
            raise PlacementError(f"sets of {size} nodes leave no data shard at EC:{parity}")
        self.topology = topology
        self.parity_shards = parity
        self.data_shards = size - parity

    @property
    def set_count(self) -> int:
        return len(self.topology.sets)

    def all_nodes(self) -> tuple[str, ...]:
        return tuple(n.name for n in self.topology.nodes)

    def set_members(self, index: int) -> tuple[str, ...]:
        """The nodes of a set in topology order (no rotation)."""
        return self.topology.sets[index]

    def locate(self, bucket: str, key: str) -> ErasureSet:
        """The set of `bucket/key` with its nodes rotated into shard order."""
        h = object_hash(bucket, key)
        index = h % self.set_count
        members = self.topology.sets[index]
        start = (h // self.set_count) % len(members)
        rotated = tuple(members[(start + i) % len(members)] for i in range(len(members)))
        return ErasureSet(index, rotated, self.data_shards, self.parity_shards)
