"""What every part of the erasure-coded object layer shares: the node pool, placement, heal
queue, the CPU worker pool, and the tunables of the data path."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

from gateway.erasure import BLOCK_SIZE, HASH_XXH3_128, Geometry
from gateway.heal_queue import HealItem, HealQueue
from gateway.node_pool import NodePool
from gateway.placement import ErasureSet, Placement
from gateway.storage_client import Timeouts
from proto import storage_pb2 as pb

__all__ = ["INLINE_LIMIT", "INLINE_WORK", "META_VERSIONS", "LayerContext", "geometry_message"]

T = TypeVar("T")
log = logging.getLogger("tessera.gateway.objects")

INLINE_LIMIT = 128 * 1024  # a shard this small goes inside the metadata (MinIO's default)
# Below this many bytes, CPU work (hashing, sealing, coding) stays on the event loop: a hop to
# the worker pool costs more than the work (as in gateway/s3/body.py).
INLINE_WORK = 64 * 1024
META_VERSIONS = 4  # newest versions each node reports, so a stray newer one hides nothing

_HASH_ENUM = {HASH_XXH3_128: pb.XXH3_128, "sha256": pb.SHA256}


def geometry_message(geometry: Geometry) -> pb.Geometry:
    return pb.Geometry(data_shards=geometry.data_shards, parity_shards=geometry.parity_shards,
                       block_size=geometry.block_size,
                       shard_block_size=geometry.shard_block_size,
                       hash=_HASH_ENUM[geometry.hash_algorithm])


@dataclass
class LayerContext:
    """Shared state of one ErasureObjectLayer."""

    pool: NodePool
    placement: Placement
    heal: HealQueue
    executor: ThreadPoolExecutor
    block_size: int = BLOCK_SIZE
    hash_algorithm: str = HASH_XXH3_128
    inline_limit: int = INLINE_LIMIT
    # messages buffered per node (each up to ~1 MiB: shard_writer.GROUP_BLOCKS blocks on a
    # write, a ReadShardBlocks run on a read), beside the one in hand and gRPC's own 1 MiB
    # stream window; 2 measured no faster than 1 and held ~20% more gateway memory
    queue_depth: int = 1
    read_ahead: int = 1
    # shard bytes each node sends with the metadata for a read from the start (one run: a
    # 1 MiB object then needs no second round trip)
    head_bytes: int = 1 << 20
    # a PUT of one erasure block (too big to be inline) sends each node one WriteShardOnce
    # call (shard and commit) instead of a WriteShard stream; False: always stream
    write_once: bool = True
    # new objects (PUTs, multipart uploads) whose parity was raised for offline nodes
    parity_upgrades: int = 0
    _background: set[asyncio.Task[None]] = field(default_factory=set)

    @property
    def timeouts(self) -> Timeouts:
        return self.pool.timeouts

    def geometry_for(self, eset: ErasureSet) -> Geometry:
        return Geometry(eset.data_shards, eset.parity_shards, self.block_size,
                        self.hash_algorithm)

    def write_set(self, eset: ErasureSet) -> ErasureSet:
        """The set a new object is written to, with MinIO's parity upgrade: one more parity
        shard (one fewer data shard) per node of the set the pool is backing off from when
        the write starts, up to half the set. The shard order stays the set's, so shard i
        still goes to eset.nodes[i]; the geometry is recorded with the object."""
        offline = self.pool.offline(eset.nodes)
        upgraded = eset.upgraded(len(offline))
        if upgraded is not eset:
            self.parity_upgrades += 1
            log.debug("set %d: %d node(s) offline (%s): writing EC %d+%d instead of %d+%d",
                      eset.index, len(offline), ", ".join(offline), upgraded.data_shards,
                      upgraded.parity_shards, eset.data_shards, eset.parity_shards)
        return upgraded

    async def run(self, fn: Callable[..., T], *args: object) -> T:
        """CPU work (zfec, hashes) in the worker pool, keeping the event loop free."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, fn, *args)

    async def run_sized(self, size: int, fn: Callable[..., T], *args: object) -> T:
        """`run`, or fn(*args) right here when it works on fewer than INLINE_WORK bytes."""
        if size < INLINE_WORK:
            return fn(*args)
        return await self.run(fn, *args)

    def record_heal(self, bucket: str, key: str, version_id: str, reason: str,
                    nodes: tuple[str, ...] | list[str]) -> None:
        if nodes:
            self.heal.record(HealItem(bucket, key, version_id, reason, tuple(nodes)))
