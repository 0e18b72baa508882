"""Multipart uploads, staged on the key's set: create, parts, listings, complete, abort.

Each part attempt is erasure-coded under a fresh data id and then moved into the upload with
PutPart on the nodes that stored it; a re-upload replaces the earlier attempt. Listings take,
per part number, the attempt a read quorum of nodes agree on. Complete checks order, ETags
and sizes, then commits one version naming the chosen attempts (CommitObject with the upload
id), with the same write quorum and rollback as a single PUT.
"""

from __future__ import annotations

import hashlib
import itertools
import time
import uuid
from collections import Counter, defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

import grpc

from gateway.objects import errors as oe
from gateway.objects.api import (
    MAX_PART_NUMBER,
    MAX_PART_SIZE,
    MIN_PART_SIZE,
    BodyStream,
    CompletedPart,
    ObjectInfo,
    PartInfo,
    PutMetadata,
    UploadInfo,
)
from gateway.objects.commit import CommitPlan, commit_version
from gateway.objects.context import LayerContext, geometry_message
from gateway.objects.metadata import MetadataError, ObjectMeta, PartMeta, PartRecord, UploadMeta
from gateway.objects.put import WriteSealing, erasure_record
from gateway.objects.quorum import fan_out, reduce_errors
from gateway.objects.shard_writer import BlockSealer, ShardTarget, abort_write, write_stream
from gateway.objects.version_ids import new_version_id
from gateway.placement import ErasureSet, PlacementError
from proto import storage_pb2 as pb

__all__ = [
    "StoredUpload",
    "UploadSealing",
    "abort_upload",
    "complete_upload",
    "create_upload",
    "get_upload",
    "list_parts",
    "multipart_etag",
    "upload_part",
    "upload_set",
]


class UploadSealing(Protocol):
    """An encrypted upload's view of its parts (the crypto seam of Complete)."""

    def part_etag(self, part: PartMeta) -> str:
        """The ETag the client was given for a stored part."""
        ...

    def object_record(self, etag: str, parts: Sequence[tuple[int, Mapping[str, Any] | None]]
                      ) -> tuple[str, dict]:
        """(ETag to store, encryption record) of the object made of `parts` (number and
        part record, in order), whose S3 ETag is `etag`."""
        ...


def _plain_etag(part: PartMeta) -> str:
    return part.etag


def multipart_etag(md5s: list[bytes]) -> str:
    """S3's multipart ETag: MD5 of the concatenated binary part MD5s, then "-<count>"."""
    return f"{hashlib.md5(b''.join(md5s)).hexdigest()}-{len(md5s)}"


async def _set_call(ctx: LayerContext, eset: ErasureSet, method: str, request: object, *,
                    quorum: int, write: bool, what: str) -> dict[str, object]:
    timeout = ctx.timeouts.unary
    nodes = ctx.pool.usable(eset.nodes, quorum)
    out = await fan_out(nodes, lambda n: ctx.pool.client(n).unary(method, request,
                                                                   deadline=timeout),
                        quorum=quorum, timeout=timeout + 1)
    out.require(write=write, what=what)
    return out.values()  # type: ignore[return-value]


async def create_upload(ctx: LayerContext, bucket: str, key: str, metadata: PutMetadata,
                        encryption: Mapping[str, object] | None = None) -> UploadInfo:
    """Stages a new upload. Its geometry is fixed here, parity upgrade included (as MinIO
    does at CreateMultipartUpload): every part and the completed object share it."""
    eset = ctx.write_set(ctx.placement.locate(bucket, key))
    upload_id = new_version_id()  # time-ordered, unique
    meta = UploadMeta(time.time_ns(), metadata, encryption, eset.data_shards,
                      eset.parity_shards)
    request = pb.CreateUploadRequest(bucket=bucket, key=key, upload_id=upload_id,
                                     meta=meta.to_bytes())
    try:
        await _set_call(ctx, eset, "CreateUpload", request, quorum=eset.write_quorum,
                        write=True, what=f"create upload {bucket}/{key}")
    except oe.QuorumError:
        await _abort_on(ctx, eset, upload_id)
        raise
    return meta.upload_info(bucket, key, upload_id)


@dataclass(frozen=True)
class StoredUpload:
    """An upload as stored: what S3 reports, and the metadata (with crypto's record)."""

    info: UploadInfo
    meta: UploadMeta


def upload_set(ctx: LayerContext, stored: StoredUpload) -> ErasureSet:
    """The upload's set with the geometry recorded at its creation (the set's configured one
    for an upload that recorded none)."""
    eset = ctx.placement.locate(stored.info.bucket, stored.info.key)
    if not stored.meta.data_shards:
        return eset
    try:
        return eset.with_geometry(stored.meta.data_shards, stored.meta.parity_shards)
    except PlacementError as exc:
        raise MetadataError(f"upload {stored.info.upload_id}: {exc}") from exc


async def get_upload(ctx: LayerContext, bucket: str, key: str, upload_id: str) -> StoredUpload:
    """The upload as a read quorum of its own geometry stores it (k of an upgraded upload
    can be below the set's); UploadNotFound if it is not this key's."""
    eset = ctx.placement.locate(bucket, key)
    floor = eset.upgraded(eset.size).read_quorum  # the fewest holders any upload can need
    replies = await _set_call(ctx, eset, "GetUpload", pb.GetUploadRequest(upload_id=upload_id),
                              quorum=floor, write=False, what=f"upload {upload_id}")
    infos = [r for r in replies.values() if isinstance(r, pb.UploadInfo)]
    info, holders = Counter((i.bucket, i.key, i.meta) for i in infos).most_common(1)[0]
    if info[:2] != (bucket, key):
        raise oe.UploadNotFound(f"upload {upload_id} is not an upload of {bucket}/{key}")
    meta = UploadMeta.from_bytes(info[2])
    stored = StoredUpload(meta.upload_info(bucket, key, upload_id), meta)
    need = upload_set(ctx, stored).read_quorum
    if holders < need:
        raise oe.InsufficientReadQuorum(
            f"upload {upload_id}: {holders} of {len(eset.nodes)} nodes hold it, need {need}")
    return stored


async def upload_part(ctx: LayerContext, stored: StoredUpload, part_number: int,
                      body: BodyStream, *, size: int | None, expected_md5: bytes | None,
                      checksums: Mapping[str, str] | None,
                      sealer: BlockSealer | None = None,
                      encryption: WriteSealing | None = None,
                      want_md5: bool = True) -> PartInfo:
    """Stores one part attempt. `sealer`/`encryption` as for put.put_stream; `want_md5`:
    the part's ETag is its MD5 (else random, unless Content-MD5 is checked)."""
    if not 1 <= part_number <= MAX_PART_NUMBER:
        raise oe.InvalidInput(f"part number {part_number} outside 1..{MAX_PART_NUMBER}")
    if size is not None and size > MAX_PART_SIZE:
        raise oe.EntityTooLarge(f"{size} bytes exceed the part limit of {MAX_PART_SIZE}")
    upload = stored.info
    eset = upload_set(ctx, stored)
    target = ShardTarget(upload.bucket, upload.key, eset, ctx.geometry_for(eset),
                         data_id=str(uuid.uuid4()), part_number=part_number,
                         upload_id=upload.upload_id)
    result = await write_stream(ctx, target, body, sealer=sealer, declared_size=size,
                                want_md5=want_md5 or expected_md5 is not None,
                                max_size=MAX_PART_SIZE, allow_inline=False)
    if expected_md5 is not None and result.md5 != expected_md5:
        await abort_write(ctx, eset.nodes, target.data_id)
        raise oe.BadDigest("the Content-MD5 you specified did not match what we received")
    etag = result.md5.hex() if result.md5 is not None and want_md5 else uuid.uuid4().hex
    stored_etag, record = encryption.record(etag) if encryption is not None else (etag, None)
    meta = PartMeta(result.plain_size, result.stored_size, stored_etag, time.time_ns(),
                    dict(checksums or {}), record)
    blob = meta.to_bytes()
    timeout = ctx.timeouts.unary
    by_node = {node: index for index, node in result.written.items()}
    out = await fan_out(
        list(by_node),
        lambda n: ctx.pool.client(n).unary("PutPart", pb.PutPartRequest(
            upload_id=upload.upload_id, part_number=part_number, data_id=target.data_id,
            shard_index=by_node[n], geometry=_geometry(ctx, eset), meta=blob,
            shard_size=result.shard_size), deadline=timeout),
        quorum=eset.write_quorum, timeout=timeout + 1)
    if not out.ok:
        await abort_write(ctx, [r.node for r in out.failures], target.data_id)
        reduce_errors([*result.failures, *out.results], eset.write_quorum, write=True,
                      what=f"upload part {part_number} of {upload.upload_id}")
    return replace(meta.part_info(part_number), etag=etag)


def _geometry(ctx: LayerContext, eset: ErasureSet) -> pb.Geometry:
    return geometry_message(ctx.geometry_for(eset))


@dataclass(frozen=True)
class _AgreedPart:
    number: int
    data_id: str
    shard_size: int
    meta: PartMeta


async def _agreed_parts(ctx: LayerContext, eset: ErasureSet,
                        upload_id: str) -> dict[int, _AgreedPart]:
    """Per part number, the attempt a read quorum holds (the newest if several do)."""
    replies = await _set_call(ctx, eset, "ListParts", pb.ListPartsRequest(upload_id=upload_id),
                              quorum=eset.read_quorum, write=False,
                              what=f"list parts of {upload_id}")
    votes: dict[int, Counter[str]] = defaultdict(Counter)
    seen: dict[tuple[int, str], pb.PartInfo] = {}
    for reply in replies.values():
        for p in reply.parts:  # type: ignore[attr-defined]
            votes[p.part_number][p.data_id] += 1
            seen[(p.part_number, p.data_id)] = p
    agreed = {}
    for number, counts in votes.items():
        held = [seen[(number, d)] for d, c in counts.items() if c >= eset.read_quorum]
        if held:
            p = max(held, key=lambda i: (PartMeta.from_bytes(i.meta).mod_time_ns, i.data_id))
            agreed[number] = _AgreedPart(number, p.data_id, p.shard_size,
                                         PartMeta.from_bytes(p.meta))
    return agreed


async def list_parts(ctx: LayerContext, stored: StoredUpload, *, part_number_marker: int,
                     limit: int, part_etag: Callable[[PartMeta], str] = _plain_etag,
                     ) -> tuple[list[PartInfo], bool]:
    agreed = await _agreed_parts(ctx, upload_set(ctx, stored), stored.info.upload_id)
    numbers = sorted(n for n in agreed if n > part_number_marker)
    page = numbers[: max(limit, 0)]
    return ([replace(agreed[n].meta.part_info(n), etag=part_etag(agreed[n].meta)) for n in page],
            len(numbers) > len(page))


def _check_completion(parts: list[CompletedPart], agreed: dict[int, _AgreedPart],
                      part_etag: Callable[[PartMeta], str]) -> None:
    if not parts:
        raise oe.InvalidPart("CompleteMultipartUpload needs at least one part")
    numbers = [p.part_number for p in parts]
    if any(b <= a for a, b in itertools.pairwise(numbers)):
        raise oe.InvalidPartOrder("parts must be listed in ascending order")
    for i, part in enumerate(parts):
        have = agreed.get(part.part_number)
        if have is None or part_etag(have.meta) != part.etag.strip('"').lower():
            raise oe.InvalidPart(f"part {part.part_number} was not uploaded or has another ETag")
        if i < len(parts) - 1 and have.meta.size < MIN_PART_SIZE:
            raise oe.EntityTooSmall(
                f"part {part.part_number} is {have.meta.size} bytes, under {MIN_PART_SIZE}")


async def complete_upload(ctx: LayerContext, stored: StoredUpload, parts: list[CompletedPart],
                          *, checksums: Mapping[str, str] | None = None,
                          sealing: UploadSealing | None = None) -> ObjectInfo:
    upload = stored.info
    bucket, key = upload.bucket, upload.key
    eset = upload_set(ctx, stored)
    agreed = await _agreed_parts(ctx, eset, upload.upload_id)
    part_etag = sealing.part_etag if sealing is not None else _plain_etag
    _check_completion(parts, agreed, part_etag)
    chosen = [agreed[p.part_number] for p in parts]
    etag = multipart_etag([bytes.fromhex(part_etag(a.meta)) for a in chosen])
    stored_etag, record = etag, stored.meta.encryption
    if sealing is not None:  # the parts' crypto material moves into the object's record
        stored_etag, record = sealing.object_record(
            etag, [(a.number, a.meta.encryption) for a in chosen])
    records = tuple(PartRecord(a.number, a.meta.size, a.meta.stored_size, a.meta.etag,
                               a.data_id, None if sealing is not None else a.meta.encryption)
                    for a in chosen)
    version_id = new_version_id()
    meta = ObjectMeta(
        size=sum(a.meta.size for a in chosen), etag=stored_etag,
        mod_time_ns=time.time_ns(), erasure=erasure_record(ctx, eset),
        metadata=replace(upload.metadata, checksums=dict(checksums or {})), parts=records,
        multipart=True, encryption=record)
    refs = tuple(pb.PartRef(part_number=a.number, data_id=a.data_id, shard_size=a.shard_size)
                 for a in chosen)
    nodes = set(ctx.pool.usable(eset.nodes, eset.write_quorum))
    shards = {i: n for i, n in enumerate(eset.nodes) if n in nodes}
    await commit_version(ctx, CommitPlan(bucket, key, version_id, meta, eset, shards,
                                         parts=refs, upload_id=upload.upload_id))
    return replace(meta.object_info(bucket, key, version_id), etag=etag)


async def _abort_on(ctx: LayerContext, eset: ErasureSet, upload_id: str) -> None:
    timeout = ctx.timeouts.unary
    request = pb.AbortUploadRequest(upload_id=upload_id)
    await fan_out(list(eset.nodes), lambda n: ctx.pool.client(n).unary(
        "AbortUpload", request, deadline=timeout), quorum=0, timeout=timeout + 1)


async def abort_upload(ctx: LayerContext, stored: StoredUpload) -> None:
    upload = stored.info
    eset = upload_set(ctx, stored)
    request = pb.AbortUploadRequest(upload_id=upload.upload_id)
    timeout = ctx.timeouts.unary
    nodes = ctx.pool.usable(eset.nodes, eset.write_quorum)
    out = await fan_out(nodes, lambda n: ctx.pool.client(n).unary("AbortUpload", request,
                                                                    deadline=timeout),
                        quorum=eset.write_quorum, timeout=timeout + 1)
    gone = [r for r in out.failures if r.error is not None and
            r.error.code == grpc.StatusCode.NOT_FOUND]
    if len(out.successes) + len(gone) < eset.write_quorum:
        out.require(write=True, what=f"abort upload {upload.upload_id}")
