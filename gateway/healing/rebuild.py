"""Rebuilding one version's missing shards onto the nodes that need them, and committing them.

For each part, k intact shards are read block by block from the holders (data shards first,
each block checked against its hash, a failing source replaced by another), zfec re-creates
only the wanted shard indexes, and each is streamed to its node with WriteShard under a fresh
data id. Memory stays bounded whatever the object size: a few blocks per stream. Then
CommitObject with the version's own id and metadata makes them the node's copy: a node that
already held the version (with a bad shard) gets it replaced in one transaction; parts that
were intact on it are named by their stored data ids and kept. Inline versions and delete
markers are re-created by the commit alone.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from gateway.erasure import Geometry, block_hash, reconstruct_shards
from gateway.healing.decisions import ALL_PARTS
from gateway.objects import errors as oe
from gateway.objects.context import LayerContext, geometry_message
from gateway.objects.get import ErasureObjectReader
from gateway.objects.metadata import ObjectMeta, PartRecord
from gateway.objects.quorum import fan_out
from gateway.objects.shard_writer import ShardWriter
from gateway.objects.versions import ChosenVersion
from gateway.storage_client import NodeCallError
from proto import storage_pb2 as pb

__all__ = ["RebuildTarget", "RebuildVersion", "Unrecoverable"]


class Unrecoverable(oe.InsufficientReadQuorum):
    """Fewer than k intact shards of a part (or inline version) remain: the data cannot be
    rebuilt now. Retrying can succeed if a silent holder comes back."""


@dataclass
class RebuildTarget:
    """One node to repair: its shard index, the parts to rebuild (ALL_PARTS = every part),
    and the parts it already holds intact (part number -> its stored PartRef)."""

    node: str
    index: int
    parts: frozenset[int]
    kept: dict[int, pb.PartRef] = field(default_factory=dict)
    data_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    written: dict[int, int] = field(default_factory=dict)  # part -> shard bytes written
    inline: bytes | None = None
    error: str = ""

    def wants(self, part: int) -> bool:
        return self.parts == ALL_PARTS or part in self.parts


def _messages(geometry: Geometry, shards: Mapping[int, bytes],
              wanted: list[int]) -> dict[int, pb.WriteShardMessage]:
    """Re-create the wanted shards of one block, each as a ready WriteShard message."""
    rebuilt = reconstruct_shards(geometry, shards, wanted)
    algorithm = geometry.hash_algorithm
    return {i: pb.WriteShardMessage(block=pb.ShardBlock(data=s, hash=block_hash(algorithm, s)))
            for i, s in rebuilt.items()}


class RebuildVersion:
    """Repairs one version (`meta`, its agreed blob and a holder's geometry record) on the
    targets, reading from `sources` (node -> that node's record of the version)."""

    def __init__(self, ctx: LayerContext, bucket: str, key: str, version_id: str,
                 meta: ObjectMeta, blob: bytes, geometry: pb.Geometry | None):
        self.ctx, self.bucket, self.key, self.version_id = ctx, bucket, key, version_id
        self.meta, self.blob = meta, blob
        self.geometry = geometry if geometry is not None and geometry.data_shards else \
            geometry_message(meta.erasure.geometry)
        self.corrupt_sources: set[str] = set()

    # ---- shards ----

    async def rebuild_part(self, part: PartRecord, sources: Mapping[str, pb.ObjectVersion],
                           targets: list[RebuildTarget]) -> None:
        """Streams the targets' shards of one part; a target that fails gets its `error`."""
        k = self.meta.erasure.data_shards
        if len(sources) < k:
            raise Unrecoverable(f"{self.bucket}/{self.key} part {part.number}: "
                                f"{len(sources)} intact shards, need {k}")
        info = self.meta.object_info(self.bucket, self.key, self.version_id)
        others = tuple(n for n in self.meta.erasure.distribution if n not in sources)
        chosen = ChosenVersion(self.version_id, self.meta, dict(sources), others)
        reader = ErasureObjectReader(self.ctx, info, chosen)
        writers = {t.index: (t, self._writer(t, part.number)) for t in targets}
        geometry = self.meta.erasure.geometry
        try:
            async for _, _, shards in reader.part_shards(part):
                alive = [i for i, (_, w) in writers.items() if w.alive]
                if not alive:
                    break
                messages = await self.ctx.run(_messages, geometry, shards, alive)
                for index in alive:
                    await writers[index][1].send(messages[index])
        except BaseException:
            for _, writer in writers.values():
                writer.cancel()
                await writer.wait_closed()
            raise
        finally:
            self.corrupt_sources |= reader.damage.corrupt
        expected = geometry.shard_size(part.stored_size)
        for target, writer in writers.values():
            reply = await writer.finish()
            if reply is None or reply.bytes != expected:
                target.error = target.error or (writer.error.short() if writer.error else
                                                f"{target.node}: short shard write")
            else:
                target.written[part.number] = reply.bytes

    def _writer(self, target: RebuildTarget, part_number: int) -> ShardWriter:
        header = pb.ShardHeader(bucket=self.bucket, key=self.key, data_id=target.data_id,
                                part_number=part_number, shard_index=target.index,
                                geometry=self.geometry)
        return ShardWriter(self.ctx, target.node, target.index, header)

    async def rebuild_inline(self, shards: Mapping[int, bytes],
                             targets: list[RebuildTarget]) -> None:
        """Re-creates the targets' inline shards from intact ones (shard index -> bytes)."""
        k = self.meta.erasure.data_shards
        if len(shards) < k:
            raise Unrecoverable(f"{self.bucket}/{self.key}: {len(shards)} intact inline "
                                f"shards, need {k}")
        rebuilt = await self.ctx.run(reconstruct_shards, self.meta.erasure.geometry, shards,
                                     [t.index for t in targets])
        for target in targets:
            target.inline = rebuilt[target.index]

    # ---- commit ----

    def _commit_request(self, target: RebuildTarget) -> pb.CommitObjectRequest:
        meta = self.meta
        request = pb.CommitObjectRequest(
            bucket=self.bucket, key=self.key, version_id=self.version_id,
            delete_marker=meta.delete_marker, meta=self.blob, shard_index=target.index,
            geometry=self.geometry)
        if target.inline is not None:
            request.inline_shard = target.inline
        for part in meta.parts:
            if part.number in target.written:
                request.parts.add(part_number=part.number, data_id=target.data_id,
                                  shard_size=target.written[part.number])
            else:
                request.parts.append(target.kept[part.number])
        return request

    async def commit(self, targets: list[RebuildTarget]) -> list[RebuildTarget]:
        """CommitObject on every target that has all it needs; the ones that committed."""
        ready = [t for t in targets if not t.error and (self.meta.delete_marker or
                 self.meta.is_inline or all(p.number in t.written or p.number in t.kept
                                            for p in self.meta.parts))]
        for t in targets:
            if t not in ready and not t.error:
                t.error = f"{t.node}: a part could not be rebuilt"
        timeout = self.ctx.timeouts.unary
        by_node = {t.node: t for t in ready}
        out = await fan_out(list(by_node), lambda n: self.ctx.pool.client(n).unary(
            "CommitObject", self._commit_request(by_node[n]), deadline=timeout), quorum=0,
            timeout=timeout + 1)
        for r in out.failures:
            by_node[r.node].error = r.error.short() if r.error else "commit failed"
        written = {t.data_id for t in ready if t.error and t.written}
        for t in ready:
            if t.data_id in written:
                await self._abort(t)
        return [by_node[r.node] for r in out.successes]

    async def _abort(self, target: RebuildTarget) -> None:
        """Best effort: drop staged shards that will not be committed (the node also sweeps
        them after its grace period)."""
        timeout = self.ctx.timeouts.unary
        with contextlib.suppress(NodeCallError):
            await self.ctx.pool.client(target.node).unary(
                "AbortWrite", pb.AbortWriteRequest(data_id=target.data_id), deadline=timeout)

    async def abort_all(self, targets: list[RebuildTarget]) -> None:
        for target in targets:
            if target.written:
                await self._abort(target)
