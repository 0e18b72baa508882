"""Single PUTs and deletes: stream, check the digest, commit a new version with write quorum.

A body that ends inside one block and whose shards fit the inline limit is committed inside
the metadata (one round trip, no shard files); anything larger is streamed as shards, and
each node's stream ends with the commit, applied once its shard is durable (again one round
trip per node). Fewer than a write quorum of commits: the version is rolled back. The version
id is assigned once the whole body is in, so "last committed wins" between writers.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from typing import Protocol

from gateway.erasure import block_hash
from gateway.objects import buckets
from gateway.objects import errors as oe
from gateway.objects.api import MAX_SINGLE_PUT, BodyStream, ObjectInfo, PutMetadata
from gateway.objects.commit import CommitPlan, commit_version, settle_commit
from gateway.objects.context import LayerContext
from gateway.objects.metadata import ErasureRecord, ObjectMeta, PartRecord
from gateway.objects.shard_writer import BlockSealer, ShardTarget, WriteResult, write_stream
from gateway.objects.version_ids import new_version_id
from gateway.placement import ErasureSet
from proto import storage_pb2 as pb

__all__ = ["WriteSealing", "delete_object", "erasure_record", "put_stream"]


class WriteSealing(Protocol):
    """The encryption record of a write, made once its ETag is known (the crypto seam)."""

    def record(self, etag: str) -> tuple[str, dict[str, str]]:
        """(the ETag to store in clear, the record to store) for the ETag S3 reports; an
        ETag that would reveal the plaintext (SSE-S3's MD5) is stored only sealed."""
        ...


def erasure_record(ctx: LayerContext, eset: ErasureSet) -> ErasureRecord:
    geometry = ctx.geometry_for(eset)
    return ErasureRecord(geometry.data_shards, geometry.parity_shards, geometry.block_size,
                         geometry.hash_algorithm, eset.index, eset.nodes)


async def put_stream(
    ctx: LayerContext,
    bucket: str,
    key: str,
    body: BodyStream,
    *,
    size: int | None,
    metadata: PutMetadata,
    expected_md5: bytes | None = None,
    sealer: BlockSealer | None = None,
    encryption: WriteSealing | None = None,
    want_md5: bool = True,
) -> ObjectInfo:
    """Stores `body` as a new version. `sealer` and `encryption` are the crypto seam: the
    sealer turns plaintext blocks into stored blocks, `encryption` makes the record stored
    with them. `want_md5`: the ETag is the body's MD5 (else random, unless Content-MD5)."""
    if size is not None and size > MAX_SINGLE_PUT:
        raise oe.EntityTooLarge(f"{size} bytes exceed the single-PUT limit of {MAX_SINGLE_PUT}")
    eset = ctx.write_set(ctx.placement.locate(bucket, key))
    target = ShardTarget(bucket, key, eset, ctx.geometry_for(eset), data_id=str(uuid.uuid4()))
    etags: list[str] = []

    def seal(result: WriteResult) -> CommitPlan:
        """The version to commit once the body is whole (the streams carry it)."""
        if expected_md5 is not None and result.md5 != expected_md5:
            raise oe.BadDigest("the Content-MD5 you specified did not match what we received")
        etag = result.md5.hex() if result.md5 is not None and want_md5 else uuid.uuid4().hex
        stored_etag, record = encryption.record(etag) if encryption is not None else (etag,
                                                                                       None)
        version_id = new_version_id()
        meta = ObjectMeta(size=result.plain_size, etag=stored_etag, mod_time_ns=time.time_ns(),
                          erasure=erasure_record(ctx, eset), metadata=metadata,
                          encryption=record, **_layout(ctx, target, result))
        etags.append(etag)
        return _plan(ctx, target, result, version_id, meta)

    try:
        result = await write_stream(ctx, target, body, sealer=sealer,
                                    want_md5=want_md5 or expected_md5 is not None,
                                    declared_size=size, max_size=MAX_SINGLE_PUT, commit=seal)
        plan = result.plan
        if plan is not None:  # committed by the write streams: settle the quorum
            await settle_commit(ctx, plan, result.commits)
    except oe.InsufficientWriteQuorum as exc:
        await _explain(ctx, bucket, exc)
        raise
    if plan is None:  # inline: the shards travel inside CommitObject
        plan = seal(result)
        await commit_version(ctx, plan)
    ctx.record_heal(bucket, key, plan.version_id, "write-missed",
                    [r.node for r in result.failures])
    return replace(plan.meta.object_info(bucket, key, plan.version_id), etag=etags[-1])


async def _explain(ctx: LayerContext, bucket: str, failure: Exception) -> None:
    """A node that refuses a stream's header (no such bucket) ends the call while shards are
    still being sent, and gRPC then reports only INTERNAL: ask the nodes about the bucket."""
    try:
        await buckets.head_bucket(ctx, bucket)
    except oe.BucketNotFound as exc:
        raise exc from failure
    except oe.ObjectLayerError:
        pass


def _layout(ctx: LayerContext, target: ShardTarget, result: WriteResult) -> dict[str, object]:
    if result.inline is not None:
        algorithm = target.geometry.hash_algorithm
        layout: dict[str, object] = {
            "inline_hashes": tuple(block_hash(algorithm, s) for s in result.inline)}
        if result.stored_size != result.plain_size:
            layout["inline_stored_size"] = result.stored_size
        return layout
    part = PartRecord(1, result.plain_size, result.stored_size,
                      result.md5.hex() if result.md5 else "", target.data_id)
    return {"parts": (part,)}


def _plan(ctx: LayerContext, target: ShardTarget, result: WriteResult, version_id: str,
          meta: ObjectMeta) -> CommitPlan:
    eset = target.eset
    if result.inline is not None:
        nodes = set(ctx.pool.usable(eset.nodes, eset.write_quorum))
        shards = {i: n for i, n in enumerate(eset.nodes) if n in nodes}
        return CommitPlan(target.bucket, target.key, version_id, meta, eset, shards,
                          inline=result.inline)
    ref = pb.PartRef(part_number=1, data_id=target.data_id, shard_size=result.shard_size)
    return CommitPlan(target.bucket, target.key, version_id, meta, eset, dict(result.written),
                      parts=(ref,), data_ids=(target.data_id,),
                      earlier_failures=list(result.failures))


async def delete_object(ctx: LayerContext, bucket: str, key: str) -> str:
    """Commits a delete marker with write quorum; returns its version id. A marker holds no
    data, so it keeps the set's own geometry (no parity upgrade)."""
    eset = ctx.placement.locate(bucket, key)
    version_id = new_version_id()
    meta = ObjectMeta(size=0, etag="", mod_time_ns=time.time_ns(),
                      erasure=erasure_record(ctx, eset), delete_marker=True)
    nodes = set(ctx.pool.usable(eset.nodes, eset.write_quorum))
    shards = {i: n for i, n in enumerate(eset.nodes) if n in nodes}
    await commit_version(ctx, CommitPlan(bucket, key, version_id, meta, eset, shards))
    return version_id
