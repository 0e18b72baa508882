"""Walking a bucket's keys on one erasure set: every node's listing (latest version per key,
delete markers included) merged in key order, so a caller sees for each key which node holds
which latest version, and which nodes hold nothing.

Used by the scanner (keys whose nodes disagree go on the heal queue) and by a full heal pass
(every key, as any node lists it, gets a heal check).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass

import grpc

from gateway.objects.context import LayerContext
from gateway.storage_client import NodeCallError
from proto import storage_pb2 as pb

__all__ = ["KeyState", "walk_set"]

PAGE = 1000


@dataclass(frozen=True)
class KeyState:
    """One key of a set: `latest` maps each node that holds the key to its latest version id;
    `answered` are the nodes whose listing covers the key (holding it or not)."""

    key: str
    latest: dict[str, str]
    answered: tuple[str, ...]

    @property
    def newest(self) -> str:
        return max(self.latest.values())

    @property
    def diverged(self) -> bool:
        """Some answering node lacks the key or lists another latest version."""
        return len(self.latest) < len(self.answered) or len(set(self.latest.values())) > 1

    @property
    def behind(self) -> tuple[str, ...]:
        """Answering nodes without the newest latest version."""
        newest = self.newest
        return tuple(n for n in self.answered if self.latest.get(n) != newest)


class _Cursor:
    """One node's ListObjects, page by page. No bucket on the node = an empty listing."""

    def __init__(self, ctx: LayerContext, node: str, bucket: str, prefix: str, after: str):
        self.ctx, self.node, self.bucket, self.prefix = ctx, node, bucket, prefix
        self.after = after
        self.buffer: list[pb.ObjectVersion] = []
        self.exhausted = False
        self.failed = False

    async def head(self) -> pb.ObjectVersion | None:
        if not self.buffer and not self.exhausted:
            await self._fill()
        return self.buffer[0] if self.buffer else None

    async def _fill(self) -> None:
        request = pb.ListObjectsRequest(bucket=self.bucket, prefix=self.prefix,
                                        start_after=self.after, limit=PAGE,
                                        include_delete_markers=True)
        t = self.ctx.timeouts
        try:
            self.buffer = [v async for v in self.ctx.pool.client(self.node).stream(
                "ListObjects", request, deadline=t.unary * 3, idle_timeout=t.idle)]
        except NodeCallError as exc:
            self.exhausted = True
            self.failed = not (exc.code == grpc.StatusCode.NOT_FOUND and
                               exc.reason == "NoSuchBucket")
            return
        self.exhausted = len(self.buffer) < PAGE
        if self.buffer:
            self.after = self.buffer[-1].key


async def walk_set(ctx: LayerContext, bucket: str, nodes: Sequence[str], *, prefix: str = "",
                   start_after: str = "") -> AsyncIterator[KeyState]:
    """Every key any node of the set lists after `start_after`, in byte order. A node whose
    listing fails is left out of `answered` from then on (it may hold anything)."""
    cursors = [_Cursor(ctx, n, bucket, prefix, start_after)
               for n in ctx.pool.usable(list(nodes), 0)]
    while True:
        found = await asyncio.gather(*(c.head() for c in cursors))
        heads = {c.node: h for c, h in zip(cursors, found, strict=True)}
        live = [c for c in cursors if not c.failed]
        keys = [h.key for h in heads.values() if h is not None]
        if not keys:
            return
        key = min(keys)
        latest = {}
        for cursor in live:
            head = heads[cursor.node]
            if head is not None and head.key == key:
                latest[cursor.node] = cursor.buffer.pop(0).version_id
        yield KeyState(key, latest, tuple(c.node for c in live))
