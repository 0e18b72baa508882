"""Buckets and their configuration blobs, kept on every node of the cluster with quorum.

The cluster quorum is a majority of all nodes (N/2 + 1) for both reads and writes, as MinIO
uses for bucket metadata: any two quorums overlap, so a bucket made or removed with quorum is
seen that way by every later quorum read.
"""

from __future__ import annotations

from collections import Counter

import grpc

from gateway.objects import errors as oe
from gateway.objects.api import BucketInfo
from gateway.objects.context import LayerContext
from gateway.objects.quorum import FanOut, fan_out, reduce_errors
from proto import storage_pb2 as pb

__all__ = [
    "delete_bucket",
    "get_bucket_config",
    "head_bucket",
    "list_buckets",
    "make_bucket",
    "put_bucket_config",
]


def _quorum(ctx: LayerContext) -> int:
    return len(ctx.placement.all_nodes()) // 2 + 1


async def _all(ctx: LayerContext, method: str, request: object) -> FanOut[object]:
    timeout = ctx.timeouts.unary
    nodes = ctx.pool.usable(ctx.placement.all_nodes(), _quorum(ctx))
    return await fan_out(nodes, lambda n: ctx.pool.client(n).unary(method, request,
                                                                     deadline=timeout),
                         quorum=_quorum(ctx), timeout=timeout + 1)


def _answered(out: FanOut[object], code: grpc.StatusCode) -> list[str]:
    return [r.node for r in out.failures if r.error is not None and r.error.code == code]


async def make_bucket(ctx: LayerContext, bucket: str) -> None:
    out = await _all(ctx, "MakeBucket", pb.MakeBucketRequest(bucket=bucket))
    quorum = _quorum(ctx)
    existed = _answered(out, grpc.StatusCode.ALREADY_EXISTS)
    created = [r.node for r in out.successes]
    if len(existed) >= quorum:
        raise oe.BucketAlreadyExists(f"bucket {bucket} already exists")
    if len(created) + len(existed) >= quorum:
        return
    if created:  # undo, so a failed create leaves no bucket behind
        timeout = ctx.timeouts.unary
        undo = pb.DeleteBucketRequest(bucket=bucket)
        await fan_out(created, lambda n: ctx.pool.client(n).unary("DeleteBucket", undo,
                                                                    deadline=timeout),
                      quorum=0, timeout=timeout + 1)
    reduce_errors(out.results, quorum, write=True, what=f"make bucket {bucket}")


async def delete_bucket(ctx: LayerContext, bucket: str, *, is_empty: bool) -> None:
    """`is_empty` comes from a quorum listing; a node that still holds something refuses too,
    and then the nodes that already deleted get the bucket back."""
    if not is_empty:
        raise oe.BucketNotEmpty(f"bucket {bucket} is not empty")
    out = await _all(ctx, "DeleteBucket", pb.DeleteBucketRequest(bucket=bucket))
    refused = _answered(out, grpc.StatusCode.FAILED_PRECONDITION)
    deleted = [r.node for r in out.successes]
    gone = _answered(out, grpc.StatusCode.NOT_FOUND)
    if refused:
        timeout = ctx.timeouts.unary
        redo = pb.MakeBucketRequest(bucket=bucket)
        await fan_out(deleted, lambda n: ctx.pool.client(n).unary("MakeBucket", redo,
                                                                    deadline=timeout),
                      quorum=0, timeout=timeout + 1)
        raise oe.BucketNotEmpty(f"bucket {bucket} is not empty ({', '.join(refused)})")
    if len(gone) == len(out.results) or (not deleted and len(gone) >= _quorum(ctx)):
        raise oe.BucketNotFound(f"bucket {bucket} does not exist")
    if len(deleted) + len(gone) < _quorum(ctx):
        reduce_errors(out.results, _quorum(ctx), write=True, what=f"delete bucket {bucket}")


async def head_bucket(ctx: LayerContext, bucket: str) -> BucketInfo:
    out = await _all(ctx, "HeadBucket", pb.HeadBucketRequest(bucket=bucket))
    found = [r.value for r in out.successes if isinstance(r.value, pb.BucketInfo)]
    missing = _answered(out, grpc.StatusCode.NOT_FOUND)
    if len(found) + len(missing) < _quorum(ctx):
        reduce_errors(out.results, _quorum(ctx), write=False, what=f"head bucket {bucket}")
    if len(found) <= len(missing):
        raise oe.BucketNotFound(f"bucket {bucket} does not exist")
    return BucketInfo(bucket, min(b.created_ns for b in found))


async def list_buckets(ctx: LayerContext) -> list[BucketInfo]:
    """Buckets a majority of the answering nodes hold."""
    out = await _all(ctx, "ListBuckets", pb.ListBucketsRequest())
    out.require(write=False, what="list buckets")
    answered = len(out.successes)
    counts: Counter[str] = Counter()
    created: dict[str, int] = {}
    for r in out.successes:
        for b in r.value.buckets:  # type: ignore[union-attr]
            counts[b.name] += 1
            created[b.name] = min(created.get(b.name, b.created_ns), b.created_ns)
    return [BucketInfo(name, created[name]) for name in sorted(counts)
            if counts[name] * 2 > answered]


async def put_bucket_config(ctx: LayerContext, bucket: str, name: str,
                            value: bytes | None) -> None:
    request = pb.PutBucketConfigRequest(bucket=bucket, name=name, value=value or b"")
    out = await _all(ctx, "PutBucketConfig", request)
    out.require(write=True, what=f"bucket {bucket} config {name}")


async def get_bucket_config(ctx: LayerContext, bucket: str, name: str) -> bytes | None:
    """The value most answering nodes hold (None when that is "not set")."""
    out = await _all(ctx, "GetBucketConfig", pb.GetBucketConfigRequest(bucket=bucket, name=name))
    out.require(write=False, what=f"bucket {bucket} config {name}")
    votes = Counter((r.value.found, r.value.value) for r in out.successes)  # type: ignore[union-attr]
    found, value = votes.most_common(1)[0][0]
    return bytes(value) if found else None
