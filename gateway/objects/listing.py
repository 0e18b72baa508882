"""Bucket listings: each set's nodes' sorted streams merged with quorum, the sets merged in
key order.

Every node streams the latest version of each key (delete markers included) from the page's
start key on. For each key the set takes the version a read quorum agrees on, exactly as a
GET would; a key the streams leave undecided (a node holds a newer version that never reached
quorum, so it hides the agreed one) is settled by a ReadMeta quorum read of that key. Delete
markers hide keys. A page ends at a key, and the next page starts after it, so pagination
stays consistent while nodes come and go.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence

import grpc

from gateway.objects import errors as oe
from gateway.objects.api import ListPage, ObjectInfo
from gateway.objects.context import LayerContext
from gateway.objects.metadata import ObjectMeta
from gateway.objects.versions import choose_version, read_version
from gateway.placement import ErasureSet
from gateway.storage_client import NodeCallError
from proto import storage_pb2 as pb

__all__ = ["list_objects"]


class _NodeCursor:
    """One node's ListObjects stream, fetched page by page, with a one-entry lookahead."""

    def __init__(self, ctx: LayerContext, node: str, bucket: str, prefix: str,
                 start_after: str, page: int):
        self.ctx, self.node = ctx, node
        self.bucket, self.prefix, self.page = bucket, prefix, page
        self.marker = start_after
        self.buffer: list[pb.ObjectVersion] = []
        self.exhausted = False
        self.error: NodeCallError | None = None

    async def _fill(self) -> None:
        request = pb.ListObjectsRequest(bucket=self.bucket, prefix=self.prefix,
                                        start_after=self.marker, limit=self.page,
                                        include_delete_markers=True)
        t = self.ctx.timeouts
        try:
            entries = [v async for v in self.ctx.pool.client(self.node).stream(
                "ListObjects", request, deadline=t.unary * 3, idle_timeout=t.idle)]
        except NodeCallError as exc:
            self.error, self.exhausted = exc, True
            return
        self.buffer = entries
        self.exhausted = len(entries) < self.page
        if entries:
            self.marker = entries[-1].key

    async def head(self) -> pb.ObjectVersion | None:
        if not self.buffer and not self.exhausted:
            await self._fill()
        return self.buffer[0] if self.buffer else None

    def pop(self) -> pb.ObjectVersion:
        return self.buffer.pop(0)


class _SetListing:
    """One erasure set's keys, each resolved with quorum, in key order."""

    def __init__(self, ctx: LayerContext, eset: ErasureSet, bucket: str, prefix: str,
                 start_after: str, page: int):
        self.ctx, self.eset, self.bucket = ctx, eset, bucket
        nodes = ctx.pool.usable(eset.nodes, eset.read_quorum)
        self.cursors = [_NodeCursor(ctx, n, bucket, prefix, start_after, page) for n in nodes]

    def _answering(self) -> list[_NodeCursor]:
        alive = [c for c in self.cursors if c.error is None]
        if len(alive) >= self.eset.read_quorum:
            return alive
        missing = sum(1 for c in self.cursors
                      if c.error is not None and c.error.code == grpc.StatusCode.NOT_FOUND)
        failed = ", ".join(c.error.short() for c in self.cursors if c.error is not None)
        if missing >= self.eset.read_quorum:
            raise oe.BucketNotFound(f"bucket {self.bucket} does not exist")
        raise oe.InsufficientReadQuorum(
            f"list {self.bucket}: {len(alive)} of {len(self.cursors)} nodes answered "
            f"(quorum {self.eset.read_quorum}); {failed}")

    async def _resolve(self, key: str, answers: dict[str, list[pb.ObjectVersion]]) -> \
            tuple[ObjectInfo, ObjectMeta] | None:
        chosen = choose_version(answers, read_quorum=self.eset.read_quorum)
        if isinstance(chosen, str):
            record = next(v for vs in answers.values() for v in vs if v.version_id == chosen)
            meta, version_id = ObjectMeta.from_bytes(record.meta), chosen
        else:  # the latest entries disagree: ask for a few versions per node, as GET does
            try:
                version = await read_version(self.ctx, self.bucket, key, self.eset,
                                             include_inline=False)
            except oe.NotFoundError:
                return None
            meta, version_id = version.meta, version.version_id
        if meta.delete_marker:
            return None
        return meta.object_info(self.bucket, key, version_id), meta

    async def entries(self) -> AsyncIterator[tuple[ObjectInfo, ObjectMeta]]:
        while True:
            cursors = self._answering()
            heads = dict(zip([c.node for c in cursors],
                             await asyncio.gather(*(c.head() for c in cursors)), strict=True))
            cursors = self._answering()  # a node may have failed while fetching
            keys = [h.key for n, h in heads.items() if h is not None and
                    any(c.node == n for c in cursors)]
            if not keys:
                return
            key = min(keys)
            answers: dict[str, list[pb.ObjectVersion]] = {}
            for cursor in cursors:
                head = heads.get(cursor.node)
                answers[cursor.node] = [cursor.pop()] if head is not None and \
                    head.key == key else []
            info = await self._resolve(key, answers)
            if info is not None:
                yield info


Entries = Sequence[tuple[ObjectInfo, ObjectMeta]]


async def list_objects(ctx: LayerContext, bucket: str, *, prefix: str = "",
                       start_after: str = "", limit: int = 1000,
                       finish: Callable[[Entries], Awaitable[list[ObjectInfo]]] | None = None,
                       ) -> ListPage:
    """Up to `limit` live keys after `start_after`, in byte order, across every set.
    `finish` turns the page's (info, stored metadata) into what is reported (the crypto seam:
    sealed ETags)."""
    if limit <= 0:
        return ListPage((), False)
    page = min(max(limit + 1, 64), 1000)
    placement = ctx.placement
    streams = []
    for index in range(placement.set_count):
        members = placement.set_members(index)
        eset = ErasureSet(index, members, placement.data_shards, placement.parity_shards)
        streams.append(aiter(_SetListing(ctx, eset, bucket, prefix, start_after, page)
                             .entries()))
    heads: list[tuple[ObjectInfo, ObjectMeta] | None] = [await anext(s, None) for s in streams]
    found: list[tuple[ObjectInfo, ObjectMeta]] = []
    while len(found) <= limit:
        live = [(h[0].key, i) for i, h in enumerate(heads) if h is not None]
        if not live:
            break
        _, i = min(live)
        found.append(heads[i])  # type: ignore[arg-type]
        heads[i] = await anext(streams[i], None)
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]
    entries = found[:limit]
    infos = await finish(entries) if finish is not None else [info for info, _ in entries]
    return ListPage(tuple(infos), len(found) > limit)
