"""Reading a version back: k shard streams (data shards first), verified block by block.

Each block is rebuilt from the first k good shards: a join when all data shards are there, a
zfec decode otherwise. A shard that fails (node error, bad hash, wrong size, silence beyond
the idle timeout) is replaced by another holder's shard from that block on, and the version is
reported to the heal queue. Only the blocks a range needs are fetched, with a bounded
read-ahead per node.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from common.shard_wire import Block
from gateway.erasure import Geometry, block_hash, decode_block, encode_block
from gateway.objects import errors as oe
from gateway.objects.api import ObjectInfo
from gateway.objects.context import LayerContext
from gateway.objects.metadata import PartRecord
from gateway.objects.quorum import fan_out
from gateway.objects.versions import ChosenVersion
from gateway.storage_client import NodeCallError
from proto import storage_pb2 as pb

__all__ = ["ErasureObjectReader"]

log = logging.getLogger("tessera.gateway.objects")

_EOF = object()
T = TypeVar("T")


class _ShardSource:
    """One node's ReadShardBlocks stream of one shard (runs of blocks, ~1 MiB a message),
    pumped into a bounded queue and handed out block by block. `head`: the shard's first
    blocks, already received with the metadata; only the blocks after them are streamed."""

    def __init__(self, ctx: LayerContext, node: str, index: int, request: pb.ReadShardRequest,
                 head: Sequence[Block] = ()):
        self.node = node
        self.index = index
        self._ctx = ctx
        self._queue: asyncio.Queue[object] = asyncio.Queue(ctx.read_ahead)
        start, end = request.start_block, request.start_block + request.block_count
        self._run: collections.deque[Block] = collections.deque(head[start:end])
        self._task: asyncio.Future[None] | None = None
        if start + len(self._run) < end:
            rest = pb.ReadShardRequest()
            rest.CopyFrom(request)
            rest.start_block, rest.block_count = start + len(self._run), end - start - len(
                self._run)
            self._task = asyncio.ensure_future(self._pump(rest))
        else:
            self._queue.put_nowait(_EOF)

    async def _pump(self, request: pb.ReadShardRequest) -> None:
        t = self._ctx.timeouts
        try:
            async for run in self._ctx.pool.client(self.node).stream(
                    "ReadShardBlocks", request, deadline=t.stream, idle_timeout=t.idle):
                await self._queue.put(run)
            await self._queue.put(_EOF)
        except NodeCallError as exc:
            await self._queue.put(exc)

    async def next(self) -> Block | object:
        """The next (data, hash) block, or _EOF, or the NodeCallError the stream ended with."""
        while not self._run:
            item = await self._queue.get()
            if not isinstance(item, list):
                return item
            self._run.extend(item)
        return self._run.popleft()

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()

    async def wait_closed(self) -> None:
        if self._task is not None:
            with contextlib.suppress(BaseException):
                await self._task


@dataclass
class _Damage:
    """Shards that failed during one read, for the heal queue."""

    corrupt: set[str] = field(default_factory=set)
    missing: set[str] = field(default_factory=set)

    def note(self, node: str, error: NodeCallError | None) -> None:
        if error is None or error.code == grpc.StatusCode.DATA_LOSS:
            self.corrupt.add(node)
        elif not error.is_transport:
            self.missing.add(node)


class _PartBlocks:
    """Blocks [first, first + count) of one part, rebuilt from k shard streams."""

    def __init__(self, reader: ErasureObjectReader, part: PartRecord, first: int, count: int):
        self.r = reader
        self.part = part
        self.first, self.end = first, first + count
        self.holders = reader.holders
        self.spares = self._order(list(self.holders))
        self.active: dict[int, _ShardSource] = {}

    def _order(self, indexes: list[int]) -> list[int]:
        """Healthy nodes first, data shards before parity (a join needs no decode)."""
        pool, k = self.r.ctx.pool, self.r.geometry.data_shards
        return sorted(indexes, key=lambda i: (pool.is_sidelined(self.holders[i]), i >= k, i))

    def _start(self, index: int, block: int) -> None:
        r = self.r
        request = pb.ReadShardRequest(bucket=r.info.bucket, key=r.info.key,
                                      version_id=r.chosen.version_id,
                                      part_number=self.part.number, start_block=block,
                                      block_count=self.end - block)
        head = r.heads.pop(index, ()) if self.part.number == 1 else ()
        self.active[index] = _ShardSource(r.ctx, self.holders[index], index, request, head)

    def _drop(self, index: int, error: NodeCallError | None) -> None:
        source = self.active.pop(index)
        source.close()
        self.r.damage.note(source.node, error)

    async def _shard(self, index: int, expected: int) -> bytes | memoryview | None:
        item = await self.active[index].next()
        if isinstance(item, tuple):
            data, digest = item
            if len(data) == expected and \
                    block_hash(self.r.geometry.hash_algorithm, data) == digest:
                return data
        self._drop(index, item if isinstance(item, NodeCallError) else None)
        return None

    async def _block_shards(self, block: int,
                            expected: int) -> dict[int, bytes | memoryview]:
        k = self.r.geometry.data_shards
        shards: dict[int, bytes | memoryview] = {}
        while len(shards) < k:
            waiting = [i for i in self.active if i not in shards]
            if not waiting and not self.spares:
                self.spares = self._order(await self.r.more_holders(include_inline=False))
            if not waiting:
                if not self.spares:
                    raise oe.InsufficientReadQuorum(
                        f"read {self.r.info.bucket}/{self.r.info.key}: only {len(shards)} of "
                        f"{k} shards of block {block} of part {self.part.number} readable")
                self._start(self.spares.pop(0), block)
                continue
            data = await self._shard(waiting[0], expected)
            if data is not None:
                shards[waiting[0]] = data
        return shards

    async def shard_blocks(self) -> AsyncIterator[tuple[int, int,
                                                        dict[int, bytes | memoryview]]]:
        """(block, stored length, k verified shards) for each block of the range."""
        geometry, k = self.r.geometry, self.r.geometry.data_shards
        for _ in range(min(k, len(self.spares))):
            self._start(self.spares.pop(0), self.first)
        try:
            for block in range(self.first, self.end):
                length = geometry.block_length(self.part.stored_size, block)
                yield block, length, await self._block_shards(block,
                                                              geometry.shard_length(length))
        finally:
            for source in self.active.values():
                source.close()
            await asyncio.gather(*(s.wait_closed() for s in self.active.values()))

    async def blocks(self) -> AsyncIterator[tuple[int, bytes]]:
        geometry, k = self.r.geometry, self.r.geometry.data_shards
        async with contextlib.aclosing(self.shard_blocks()) as stream:
            async for block, length, shards in stream:
                if all(i in shards for i in range(k)):
                    data = b"".join(shards[i] for i in range(k))
                    yield block, data[:length] if len(data) != length else data
                else:
                    yield block, await self.r.ctx.run(decode_block, geometry, shards, length)


class ErasureObjectReader:
    """An opened version (implements ObjectReader). `stream` reads the stored bytes on demand."""

    def __init__(self, ctx: LayerContext, info: ObjectInfo, chosen: ChosenVersion):
        self.ctx = ctx
        self.info = info
        self.chosen = chosen
        self.geometry: Geometry = chosen.meta.erasure.geometry
        self.damage = _Damage()
        # the version was chosen as soon as a quorum agreed: later nodes are asked on demand
        self.records: dict[str, pb.ObjectVersion] = dict(chosen.holders)
        self.holders: dict[int, str] = chosen.shard_holders()
        self._asked: set[str] = set(chosen.holders) | set(chosen.stale)
        # shard index -> its first blocks of part 1, when they came with the metadata; held
        # only until a shard stream takes them (the records let go of their copy here)
        self.heads: dict[int, list[Block]] = {}
        for record in chosen.holders.values():
            if record.head_blocks:
                self.heads[record.shard_index] = [(b.data, b.hash) for b in record.head_blocks]
                record.ClearField("head_blocks")

    async def more_holders(self, *, include_inline: bool) -> list[int]:
        """Asks the set's nodes not heard from yet for this version; the shard indexes found."""
        nodes = [n for n in self.chosen.meta.erasure.distribution if n not in self._asked]
        self._asked.update(nodes)
        if not nodes:
            return []
        request = pb.ReadMetaRequest(bucket=self.info.bucket, key=self.info.key,
                                     version_id=self.chosen.version_id,
                                     include_inline=include_inline)
        timeout = self.ctx.timeouts.unary
        out = await fan_out(nodes, lambda n: self.ctx.pool.client(n).unary(
            "ReadMeta", request, deadline=timeout), quorum=0, timeout=timeout + 1)
        found = []
        for r in out.successes:
            for record in r.value.versions:  # type: ignore[union-attr]
                if record.version_id == self.chosen.version_id and \
                        record.shard_index not in self.holders:
                    self.records[r.node] = record
                    self.holders[record.shard_index] = r.node
                    found.append(record.shard_index)
        return found

    async def stream(self, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Bytes [start, start + length) of the object (clamped to its size)."""
        async for chunk in self.stream_stored(start, length):
            yield chunk

    async def stream_stored(self, start: int = 0,
                            length: int | None = None) -> AsyncIterator[bytes]:
        """Bytes of the stored stream (ciphertext when encrypted): the seam for decryption."""
        meta = self.chosen.meta
        size = meta.stored_size
        end = size if length is None else min(size, start + max(length, 0))
        if start >= end:
            return
        try:
            if meta.is_inline:
                data = await self._inline()
                yield data[start:end]
                return
            offset = 0
            for part in meta.parts:
                lo, hi = max(start, offset), min(end, offset + part.stored_size)
                if lo < hi:
                    async for chunk in self._part_range(part, lo - offset, hi - offset):
                        yield chunk
                offset += part.stored_size
        finally:
            self._report_damage()

    async def part_shards(self, part: PartRecord) -> AsyncIterator[tuple[int, int,
                                                                        dict[int, bytes]]]:
        """Every block of one part as (block, stored length, k verified shards): healing
        re-encodes only the missing shard indexes from them."""
        count = self.geometry.block_count(part.stored_size)
        async with contextlib.aclosing(_PartBlocks(self, part, 0, count).shard_blocks()) as it:
            async for block, length, shards in it:
                # the shards are views of received messages; healing sends them on as protobuf
                yield block, length, {i: bytes(d) for i, d in shards.items()}

    async def _part_range(self, part: PartRecord, lo: int, hi: int) -> AsyncIterator[bytes]:
        async for _, chunk in self._part_blocks(part, lo, hi):
            yield chunk

    async def _part_blocks(self, part: PartRecord, lo: int,
                           hi: int) -> AsyncIterator[tuple[int, bytes]]:
        block_size = self.geometry.block_size
        first, count = self.geometry.blocks_for_range(lo, hi - lo)
        async for index, block in _PartBlocks(self, part, first, count).blocks():
            base = index * block_size
            a, b = max(lo - base, 0), min(hi - base, len(block))
            yield index, block if (a, b) == (0, len(block)) else block[a:b]

    async def stored_part_blocks(self, part_index: int, lo: int,
                                 hi: int) -> AsyncIterator[tuple[int, bytes]]:
        """Stored bytes [lo, hi) of one part (part_index 0 of an inline object is its whole
        stream), as (erasure block index, the block's bytes within the range): the seam
        for decryption, which authenticates block by block."""
        if hi <= lo:
            return
        try:
            if self.chosen.meta.is_inline:
                yield 0, (await self._inline())[lo:hi]
                return
            async for item in self._part_blocks(self.chosen.meta.parts[part_index], lo, hi):
                yield item
        finally:
            self._report_damage()

    async def rebuild_block(self, part_index: int, block_index: int,
                            accept: Callable[[bytes], T | None]) -> T:
        """A block whose k shards all passed their hashes yet whose content failed the
        caller's check (e.g. AEAD authentication): a node sent a shard with a matching,
        forged hash. Fetches that block's shard from every holder and decodes it from each
        k-subset until `accept(block)` (run in the worker pool) returns a value; shards that
        disagree with the accepted block are reported corrupt. ObjectTampered if none does."""
        meta, geometry = self.chosen.meta, self.geometry
        if meta.is_inline:
            raise oe.ObjectTampered(f"{self.info.bucket}/{self.info.key}: inline data is not "
                                    "authentic")
        part = meta.parts[part_index]
        await self.more_holders(include_inline=False)
        length = geometry.block_length(part.stored_size, block_index)
        shards = await self._all_shards(part, block_index, geometry.shard_length(length))
        k = geometry.data_shards
        # one bad shard is the likely case: subsets that leave out a single shard come first
        subsets = sorted(itertools.combinations(sorted(shards), k),
                         key=lambda c: (sum(i >= k for i in c), c))
        for subset in subsets:
            block = await self.ctx.run(decode_block, geometry, {i: shards[i] for i in subset},
                                       length)
            value = await self.ctx.run(accept, block)
            if value is not None:
                good = await self.ctx.run(encode_block, geometry, block)
                forged = sorted(self.holders[i] for i, data in shards.items() if data != good[i])
                for node in forged:
                    self.damage.note(node, None)
                log.warning("%s/%s: block %d of part %d failed authentication with matching "
                            "shard hashes; rebuilt from other shards (forged by: %s)",
                            self.info.bucket, self.info.key, block_index, part.number,
                            ", ".join(forged) or "?")
                self._report_damage()
                return value
        self._report_damage()
        raise oe.ObjectTampered(
            f"{self.info.bucket}/{self.info.key}: block {block_index} of part {part.number} "
            f"fails authentication from every {k} of its {len(shards)} readable shards")

    async def _all_shards(self, part: PartRecord, block_index: int,
                          expected: int) -> dict[int, bytes]:
        request = pb.ReadShardRequest(bucket=self.info.bucket, key=self.info.key,
                                      version_id=self.chosen.version_id,
                                      part_number=part.number, start_block=block_index,
                                      block_count=1)
        t = self.ctx.timeouts

        async def one(index: int, node: str) -> tuple[int, bytes | None]:
            try:
                async for message in self.ctx.pool.client(node).stream(
                        "ReadShard", request, deadline=t.stream, idle_timeout=t.idle):
                    data = message.data
                    if len(data) == expected and \
                            block_hash(self.geometry.hash_algorithm, data) == message.hash:
                        return index, data
                    break
            except NodeCallError as exc:
                self.damage.note(node, exc)
                return index, None
            self.damage.note(node, None)
            return index, None

        found = await asyncio.gather(*(one(i, n) for i, n in sorted(self.holders.items())))
        return {i: data for i, data in found if data is not None}

    def _inline_shards(self, shards: dict[int, bytes], nodes: list[str]) -> None:
        meta, algorithm = self.chosen.meta, self.geometry.hash_algorithm
        for node in nodes:
            record = self.records[node]
            index = record.shard_index
            if index < len(meta.inline_hashes) and \
                    block_hash(algorithm, record.inline_shard) == meta.inline_hashes[index]:
                shards[index] = record.inline_shard
            else:
                self.damage.note(node, None)

    async def _inline(self) -> bytes:
        meta, geometry = self.chosen.meta, self.geometry
        shards: dict[int, bytes] = {}
        self._inline_shards(shards, list(self.records))
        if len(shards) < geometry.data_shards:
            found = await self.more_holders(include_inline=True)
            self._inline_shards(shards, [self.holders[i] for i in found])
        if len(shards) < geometry.data_shards:
            raise oe.InsufficientReadQuorum(
                f"read {self.info.bucket}/{self.info.key}: {len(shards)} intact inline shards, "
                f"need {geometry.data_shards}")
        return await self.ctx.run_sized(meta.stored_size, decode_block, geometry, shards,
                                        meta.stored_size)

    def _report_damage(self) -> None:
        info = self.info
        self.ctx.record_heal(info.bucket, info.key, info.version_id, "read-corrupt",
                             sorted(self.damage.corrupt))
        self.ctx.record_heal(info.bucket, info.key, info.version_id, "read-missing",
                             sorted(self.damage.missing - self.damage.corrupt))
        self.damage = _Damage()

    async def close(self) -> None:
        return None
