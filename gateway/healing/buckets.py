"""Bucket healing: a node that lost a bucket (a wiped disk, or down while it was made) gets it
back, with the bucket's configuration blobs, when a cluster quorum (N/2 + 1) holds it.

A bucket held by fewer nodes (a create that failed, a delete that missed a node) is left
alone: it is invisible to quorum reads, and removing it is not healing's call.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass

import grpc

from gateway.objects.context import LayerContext
from gateway.objects.quorum import fan_out
from proto import storage_pb2 as pb

__all__ = ["BUCKET_CONFIG_NAMES", "BucketHeal", "heal_buckets"]

log = logging.getLogger("tessera.heal")

# configuration blobs copied to a node that gets a bucket back (there is no RPC that lists a
# bucket's configuration names, so the ones the gateway uses are named here)
BUCKET_CONFIG_NAMES = ("encryption", "policy", "lifecycle", "versioning", "tagging", "cors",
                       "notification", "object-lock", "replication")


@dataclass(frozen=True)
class BucketHeal:
    """`exists`: True (a quorum holds it), False (a quorum answered and it does not hold it),
    None (too few nodes answered to say). `made_on`: nodes the bucket was re-created on."""

    bucket: str
    exists: bool | None
    made_on: tuple[str, ...] = ()


async def _call(ctx: LayerContext, nodes: list[str], method: str, request: object):
    timeout = ctx.timeouts.unary
    return await fan_out(nodes, lambda n: ctx.pool.client(n).unary(method, request,
                                                                     deadline=timeout),
                         quorum=0, timeout=timeout + 1)


async def _copy_configs(ctx: LayerContext, bucket: str, holders: list[str],
                        targets: list[str]) -> None:
    for name in BUCKET_CONFIG_NAMES:
        out = await _call(ctx, holders, "GetBucketConfig",
                          pb.GetBucketConfigRequest(bucket=bucket, name=name))
        votes = Counter((r.value.found, r.value.value) for r in out.successes)  # type: ignore[union-attr]
        if not votes:
            continue
        (found, value), _ = votes.most_common(1)[0]
        if found:
            await _call(ctx, targets, "PutBucketConfig",
                        pb.PutBucketConfigRequest(bucket=bucket, name=name, value=value))


async def heal_buckets(ctx: LayerContext, only: str | None = None) -> list[BucketHeal]:
    """Re-creates buckets (all, or `only`) on the answering nodes that lack them."""
    nodes = list(ctx.placement.all_nodes())
    quorum = len(nodes) // 2 + 1
    out = await _call(ctx, ctx.pool.usable(nodes, 0), "ListBuckets", pb.ListBucketsRequest())
    held: dict[str, list[str]] = {}
    answered = [r.node for r in out.successes]
    for r in out.successes:
        for b in r.value.buckets:  # type: ignore[union-attr]
            if only is None or b.name == only:
                held.setdefault(b.name, []).append(r.node)
    if len(answered) < quorum:
        return [BucketHeal(only, None)] if only else []
    results = []
    for bucket in ([only] if only else sorted(held)):
        holders = held.get(bucket, [])
        if len(holders) < quorum:
            results.append(BucketHeal(bucket, False if len(answered) - len(holders) >= quorum
                                      else None))
            continue
        missing = [n for n in answered if n not in holders]
        made = await _call(ctx, missing, "MakeBucket", pb.MakeBucketRequest(bucket=bucket))
        made_on = [r.node for r in made.results if r.ok or (
            r.error is not None and r.error.code == grpc.StatusCode.ALREADY_EXISTS)]
        if made_on:
            await _copy_configs(ctx, bucket, holders, made_on)
            log.info("heal: bucket %s re-created on %s", bucket, ", ".join(made_on))
        results.append(BucketHeal(bucket, True, tuple(made_on)))
    return results
