"""Plain records the node's stores exchange: geometry, part references, versions, uploads."""

from __future__ import annotations

from dataclasses import dataclass, field

from common import bitrot

__all__ = ["BlockLayout", "Geometry", "PartRecord", "UploadPartRecord", "UploadRecord",
           "VersionRecord"]


@dataclass(frozen=True)
class Geometry:
    """Erasure geometry of a version; the node only uses the shard block size and the hash."""

    data_shards: int
    parity_shards: int
    block_size: int
    shard_block_size: int
    hash_algorithm: int  # common.bitrot value, never HASH_UNSPECIFIED once recorded

    @property
    def hash_len(self) -> int:
        return bitrot.hash_len(self.hash_algorithm)

    def layout(self, shard_size: int) -> BlockLayout:
        return BlockLayout(shard_size, self.shard_block_size, self.hash_len)


@dataclass(frozen=True)
class BlockLayout:
    """Where block i of a shard file `[hash | block]*` lives; the last block may be short."""

    shard_size: int  # bytes of block data, hashes excluded
    block_size: int  # shard_block_size
    hash_len: int

    @property
    def stride(self) -> int:
        return self.hash_len + self.block_size

    @property
    def blocks(self) -> int:
        return -(-self.shard_size // self.block_size)

    @property
    def file_size(self) -> int:
        return self.shard_size + self.blocks * self.hash_len

    def offset(self, block: int) -> int:
        return block * self.stride

    def data_len(self, block: int) -> int:
        return min(self.block_size, self.shard_size - block * self.block_size)


@dataclass(frozen=True)
class PartRecord:
    """One part of a version as stored: which file holds this node's shard of it."""

    part_number: int
    data_id: str
    shard_size: int
    file_id: str  # node-generated name of the shard file
    file_size: int


@dataclass
class VersionRecord:
    bucket: str
    key: str
    version_id: str
    is_latest: bool
    delete_marker: bool
    mod_time_ns: int
    meta: bytes
    shard_index: int
    geometry: Geometry | None
    is_inline: bool
    parts: list[PartRecord] = field(default_factory=list)
    inline_shard: bytes | None = None  # loaded only when asked for


@dataclass(frozen=True)
class UploadRecord:
    bucket: str
    key: str
    upload_id: str
    initiated_ns: int
    meta: bytes


@dataclass(frozen=True)
class UploadPartRecord:
    upload_id: str
    part_number: int
    data_id: str
    shard_index: int
    geometry: Geometry
    shard_size: int
    file_id: str
    file_size: int
    mod_time_ns: int
    meta: bytes
