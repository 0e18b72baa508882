"""Bucket listings: each set's nodes' sorted streams merged with quorum, the sets merged in
key order.

Every node streams the latest version of each key (delete markers included) from the page's
start key on, many entries per message (ListObjectBatches). For each key the set takes the
version a read quorum agrees on, exactly as a GET would; a key the streams leave undecided (a
node holds a newer version that never reached quorum, so it hides the agreed one) is settled
by a ReadMeta quorum read of that key. Delete markers hide keys. A page ends at a key, and the
next page starts after it, so pagination stays consistent while nodes come and go.

With a delimiter, only the first live key of each common prefix matters to the caller: nodes
skip the rest of a common prefix after their first entry there that is not a delete marker,
and a node that skipped a key is counted as not yet heard from for it, so a choice it could
have changed goes to the ReadMeta quorum read instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc

from gateway.objects import errors as oe
from gateway.objects.api import ListPage, ObjectInfo
from gateway.objects.context import LayerContext
from gateway.objects.metadata import listed_object
from gateway.objects.versions import choose_version, read_version
from gateway.placement import ErasureSet
from gateway.storage_client import NodeCallError
from proto import storage_pb2 as pb

__all__ = ["PAST_GROUP", "group_end", "list_objects"]

# Sorts after every key that starts with a given common prefix (the highest code point).
PAST_GROUP = "\U0010ffff"


def group_end(key: str, prefix: str, delimiter: str) -> str | None:
    """The bound past `key`'s common prefix (under `prefix`, up to `delimiter`), or None when
    the key has no delimiter past the prefix."""
    cut = key.find(delimiter, len(prefix)) if delimiter else -1
    return None if cut < 0 else key[:cut + len(delimiter)] + PAST_GROUP


# a listed object and its encryption record (the crypto seam needs it for sealed ETags)
Listed = tuple[ObjectInfo, Mapping[str, Any] | None]


class _NodeCursor:
    """One node's listing stream, fetched a page at a time."""

    def __init__(self, ctx: LayerContext, node: str, bucket: str, prefix: str,
                 delimiter: str, start_after: str, page: int):
        self.ctx, self.node = ctx, node
        self.bucket, self.prefix, self.delimiter, self.page = bucket, prefix, delimiter, page
        self.marker = start_after
        self.buffer: list[pb.ObjectVersion] = []
        self.pos = 0
        self.exhausted = False
        self.error: NodeCallError | None = None
        # keys in (first, end] the node skipped: it sent a live key of that common prefix
        self.skipped: tuple[str, str] = ("", "")

    @property
    def head(self) -> pb.ObjectVersion | None:
        return self.buffer[self.pos] if self.pos < len(self.buffer) else None

    def needs_fill(self) -> bool:
        return self.pos >= len(self.buffer) and not self.exhausted and self.error is None

    async def fill(self) -> None:
        request = pb.ListObjectsRequest(bucket=self.bucket, prefix=self.prefix,
                                        start_after=self.marker, limit=self.page,
                                        include_delete_markers=True, delimiter=self.delimiter)
        t = self.ctx.timeouts
        entries: list[pb.ObjectVersion] = []
        try:
            async for batch in self.ctx.pool.client(self.node).stream(
                    "ListObjectBatches", request, deadline=t.unary * 3, idle_timeout=t.idle):
                entries.extend(batch.entries)
        except NodeCallError as exc:
            self.error, self.exhausted = exc, True
            return
        self.buffer, self.pos = entries, 0
        self.exhausted = len(entries) < self.page
        if entries:
            last = entries[-1]
            end = None if last.delete_marker else \
                group_end(last.key, self.prefix, self.delimiter)
            self.marker = end or last.key

    def take(self) -> pb.ObjectVersion:
        entry = self.buffer[self.pos]
        self.pos += 1
        if self.delimiter and not entry.delete_marker:
            end = group_end(entry.key, self.prefix, self.delimiter)
            if end is not None:
                self.skipped = (entry.key, end)
        return entry

    def skipped_over(self, key: str) -> bool:
        first, end = self.skipped
        return first < key <= end

    def seek(self, bound: str) -> None:
        """Forget entries up to `bound`; the next fill starts after it."""
        while self.pos < len(self.buffer) and self.buffer[self.pos].key <= bound:
            self.pos += 1
        if self.pos >= len(self.buffer) and self.marker < bound:
            self.marker = bound


class _SetListing:
    """One erasure set's keys, each resolved with quorum, in key order."""

    def __init__(self, ctx: LayerContext, eset: ErasureSet, bucket: str, prefix: str,
                 delimiter: str, start_after: str, page: int):
        self.ctx, self.eset, self.bucket = ctx, eset, bucket
        self.prefix, self.delimiter = prefix, delimiter
        nodes = ctx.pool.usable(eset.nodes, eset.read_quorum)
        self.cursors = [_NodeCursor(ctx, n, bucket, prefix, delimiter, start_after, page)
                        for n in nodes]

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

    async def _resolve(self, key: str, answers: dict[str, list[pb.ObjectVersion]],
                       pending: int, held: list[pb.ObjectVersion]) -> Listed | None:
        first = held[0] if held else None
        if first is not None and len(held) == len(answers) and not pending and \
                len(held) >= (first.geometry.data_shards or self.eset.read_quorum) and \
                all(r.version_id == first.version_id for r in held):
            chosen: object = first.version_id  # every node agrees: the common case
        else:
            chosen = choose_version(answers, read_quorum=self.eset.read_quorum,
                                    pending=pending)
        if isinstance(chosen, str):
            record = next(r for r in held if r.version_id == chosen)
            if record.delete_marker:
                return None
            return listed_object(record.meta, self.bucket, key, chosen)
        try:  # the latest entries disagree: ask for a few versions per node, as GET does
            version = await read_version(self.ctx, self.bucket, key, self.eset,
                                         include_inline=False)
        except oe.NotFoundError:
            return None
        if version.delete_marker:
            return None
        return (version.meta.object_info(self.bucket, key, version.version_id),
                version.meta.encryption)

    async def entries(self) -> AsyncIterator[Listed]:
        while True:
            empty = [c for c in self.cursors if c.needs_fill()]
            if empty:
                await asyncio.gather(*(c.fill() for c in empty))
            cursors = self._answering()
            heads = [c.buffer[c.pos].key for c in cursors if c.pos < len(c.buffer)]
            if not heads:
                return
            key = min(heads)
            answers: dict[str, list[pb.ObjectVersion]] = {}
            held: list[pb.ObjectVersion] = []
            pending = 0
            for cursor in cursors:
                head = cursor.head
                if head is not None and head.key == key:
                    held.append(cursor.take())
                    answers[cursor.node] = [held[-1]]
                elif cursor.skipped_over(key):
                    pending += 1
                else:
                    answers[cursor.node] = []
            found = await self._resolve(key, answers, pending, held)
            if found is None:
                continue
            yield found
            end = group_end(key, self.prefix, self.delimiter)
            if end is not None:
                for cursor in self.cursors:
                    cursor.seek(end)


Entries = Sequence[Listed]


async def list_objects(ctx: LayerContext, bucket: str, *, prefix: str = "",
                       start_after: str = "", limit: int = 1000, delimiter: str = "",
                       finish: Callable[[Entries], Awaitable[list[ObjectInfo]]] | None = None,
                       ) -> ListPage:
    """Up to `limit` live keys after `start_after`, in byte order, across every set; with a
    `delimiter`, only the first live key of each common prefix. `finish` turns the page's
    (info, encryption record) into what is reported (the crypto seam: sealed ETags)."""
    if limit <= 0:
        return ListPage((), False)
    page = max(limit + 1, 64)
    placement = ctx.placement
    streams = []
    for index in range(placement.set_count):
        members = placement.set_members(index)
        eset = ErasureSet(index, members, placement.data_shards, placement.parity_shards)
        streams.append(aiter(_SetListing(ctx, eset, bucket, prefix, delimiter, start_after,
                                         page).entries()))
    heads: list[Listed | None] = [await anext(s, None) for s in streams]
    found: list[Listed] = []
    skip_to = ""  # the end of the last common prefix taken: other sets' keys in it are moot
    while len(found) <= limit:
        for i in range(len(heads)):
            while heads[i] is not None and heads[i][0].key <= skip_to:  # type: ignore[index]
                heads[i] = await anext(streams[i], None)
        live = [(h[0].key, i) for i, h in enumerate(heads) if h is not None]
        if not live:
            break
        key, i = min(live)
        found.append(heads[i])  # type: ignore[arg-type]
        skip_to = group_end(key, prefix, delimiter) or skip_to
        heads[i] = await anext(streams[i], None)
    for stream in streams:
        await stream.aclose()  # type: ignore[attr-defined]
    entries = found[:limit]
    infos = await finish(entries) if finish is not None else [info for info, _ in entries]
    return ListPage(tuple(infos), len(found) > limit)
