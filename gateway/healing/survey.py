"""Asking a set's nodes what they hold of one key: InspectKey (every version, with its shard
files), VerifyShard (deep mode: every block hashed on the node), and inline shards.

A node that does not answer is reported as silent (`NodeView.answered = False`), never as
"holds nothing": only definitive answers may lead to a rollback. Sidelined nodes are not
called at all (they count as silent) so a paused node costs nothing per object.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import grpc

from gateway.healing.decisions import NodeView
from gateway.objects.context import LayerContext
from gateway.objects.quorum import fan_out
from gateway.storage_client import NodeCallError
from proto import storage_pb2 as pb

__all__ = ["inline_shards", "survey_key", "verify_shards"]


def _view(node: str, reply: pb.InspectKeyReply | None, error: NodeCallError | None) -> NodeView:
    if error is None and reply is not None:
        return NodeView(node, tuple(reply.versions))
    assert error is not None
    if error.code == grpc.StatusCode.NOT_FOUND and error.reason == "NoSuchBucket":
        return NodeView(node, (), has_bucket=False)
    return NodeView(node, (), answered=False, error=error.short())


async def survey_key(ctx: LayerContext, bucket: str, key: str,
                     nodes: Sequence[str]) -> list[NodeView]:
    """Each node's InspectKey answer for the key, in the order of `nodes`."""
    ready = set(ctx.pool.usable(list(nodes), 0))
    request = pb.InspectKeyRequest(bucket=bucket, key=key)
    timeout = ctx.timeouts.unary
    out = await fan_out([n for n in nodes if n in ready], lambda n: ctx.pool.client(n).unary(
        "InspectKey", request, deadline=timeout), quorum=0, timeout=timeout + 1)
    found = {r.node: _view(r.node, r.value, r.error) for r in out.results}
    return [found.get(n) or NodeView(n, (), answered=False, error=f"{n}: sidelined")
            for n in nodes]


async def verify_shards(ctx: LayerContext, bucket: str, key: str, version_id: str,
                        nodes: Iterable[str]) -> dict[str, pb.VerifyShardReply | None]:
    """Deep check: each node hashes every block of its shard of the version. None for a node
    that did not answer (its shard is left alone)."""
    request = pb.VerifyShardRequest(bucket=bucket, key=key, version_id=version_id)
    # a whole shard is read and hashed: allow a stream's pace, not a unary deadline
    timeout = max(ctx.timeouts.unary, ctx.timeouts.idle) * 6
    out = await fan_out(list(nodes), lambda n: ctx.pool.client(n).unary(
        "VerifyShard", request, deadline=timeout), quorum=0, timeout=timeout + 1)
    return {r.node: r.value for r in out.results}


async def inline_shards(ctx: LayerContext, bucket: str, key: str, version_id: str,
                        nodes: Iterable[str]) -> dict[str, bytes | None]:
    """Each node's inline shard of the version (None: unreadable, e.g. it fails the node's
    own hash, or the node did not answer)."""
    request = pb.ReadMetaRequest(bucket=bucket, key=key, version_id=version_id,
                                 include_inline=True)
    timeout = ctx.timeouts.unary
    out = await fan_out(list(nodes), lambda n: ctx.pool.client(n).unary(
        "ReadMeta", request, deadline=timeout), quorum=0, timeout=timeout + 1)
    shards: dict[str, bytes | None] = {}
    for r in out.results:
        record = next((v for v in r.value.versions if v.version_id == version_id), None) \
            if r.value is not None else None
        shards[r.node] = record.inline_shard if record is not None else None
    return shards
