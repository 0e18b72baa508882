"""ListMultipartUploads over the sets: each set's nodes asked a page at a time from the
markers on, an upload listed when a majority of the answering nodes hold it, the sets merged
by (key, upload id).

A node returns at most a page of uploads after the markers, so an upload past the last one of
a node that filled its page may be on that node too without it saying so: a round decides only
the uploads up to the lowest such last one (the horizon) and the next round starts there. A
page of the listing therefore costs O(page) whatever the number of uploads before it.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import AsyncIterator

from gateway.objects.api import UploadInfo
from gateway.objects.context import LayerContext
from gateway.objects.metadata import UploadMeta
from gateway.objects.quorum import fan_out
from gateway.placement import ErasureSet
from proto import storage_pb2 as pb

__all__ = ["list_uploads"]

Position = tuple[str, str]  # (key, upload id)


async def _set_uploads(ctx: LayerContext, eset: ErasureSet, bucket: str, prefix: str,
                       key_marker: str, upload_id_marker: str,
                       page: int) -> AsyncIterator[UploadInfo]:
    """The set's uploads after the markers, in (key, upload id) order, a round at a time."""
    timeout = ctx.timeouts.unary
    while True:
        request = pb.ListUploadsRequest(bucket=bucket, prefix=prefix, key_marker=key_marker,
                                        upload_id_marker=upload_id_marker, limit=page)
        nodes = ctx.pool.usable(eset.nodes, eset.read_quorum)
        out = await fan_out(nodes, lambda n, r=request: ctx.pool.client(n).unary(
            "ListUploads", r, deadline=timeout), quorum=eset.read_quorum, timeout=timeout + 1)
        out.require(write=False, what=f"list uploads of {bucket}")
        replies = [reply.uploads for reply in out.values().values()]
        full = [uploads[-1] for uploads in replies if len(uploads) >= page]
        horizon: Position | None = min(((u.key, u.upload_id) for u in full), default=None)
        votes: dict[Position, Counter[bytes]] = defaultdict(Counter)
        for uploads in replies:
            for u in uploads:
                if horizon is None or (u.key, u.upload_id) <= horizon:
                    votes[(u.key, u.upload_id)][u.meta] += 1
        for name in sorted(votes):
            blobs = votes[name]
            if blobs.total() * 2 > len(replies) and _after_marker(name, key_marker,
                                                                   upload_id_marker):
                yield UploadMeta.from_bytes(blobs.most_common(1)[0][0]).upload_info(bucket,
                                                                                     *name)
        if horizon is None:
            return
        key_marker, upload_id_marker = horizon


def _after_marker(name: Position, key_marker: str, upload_id_marker: str) -> bool:
    """S3's marker rule: after the marker key, or the marker key's later uploads (upload ids
    are time-ordered, so their order is initiation order). Nodes apply it too."""
    key, upload_id = name
    if not key_marker or key > key_marker:
        return True
    return key == key_marker and bool(upload_id_marker) and upload_id > upload_id_marker


async def list_uploads(ctx: LayerContext, bucket: str, *, prefix: str, key_marker: str,
                       upload_id_marker: str, limit: int) -> tuple[list[UploadInfo], bool]:
    """Up to `limit` in-progress uploads of every set after the markers, by key then upload
    id, and whether more follow."""
    limit = max(limit, 0)
    placement = ctx.placement
    streams = []
    for index in range(placement.set_count):
        eset = ErasureSet(index, placement.set_members(index), placement.data_shards,
                          placement.parity_shards)
        streams.append(aiter(_set_uploads(ctx, eset, bucket, prefix, key_marker,
                                          upload_id_marker, limit + 1)))
    try:
        heads = [await anext(s, None) for s in streams]
        found: list[UploadInfo] = []
        while len(found) <= limit:
            live = [((h.key, h.upload_id), i) for i, h in enumerate(heads) if h is not None]
            if not live:
                break
            _, i = min(live)
            found.append(heads[i])  # type: ignore[arg-type]
            heads[i] = await anext(streams[i], None)
    finally:
        for stream in streams:
            await stream.aclose()  # type: ignore[attr-defined]
    return found[:limit], len(found) > limit
