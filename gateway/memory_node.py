"""An in-process storage node behind the `NodeClient` seam, for unit tests of the object layer.

It keeps `proto/storage.proto`'s semantics (versions committed atomically, latest = highest
version id, shard blocks verified on write and read, multipart staging) in dictionaries, and
can be told to fail: `down` (unreachable), `paused` (answers nothing until the deadline),
`fail_next[method]` (one injected error; "CommitObject" also fails the commit that ends a
WriteShard stream), `delay[method]` (a slow answer),
`corrupt_block(...)` (bitrot on "disk").
Integration tests use real node processes instead.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import grpc

from common.bitrot import block_hash
from gateway.storage_client import NodeCallError
from proto import storage_pb2 as pb

__all__ = ["MemoryNode"]

Block = tuple[bytes, bytes]  # (data, hash)


@dataclass
class _Version:
    record: pb.ObjectVersion
    shards: dict[int, list[Block]] = field(default_factory=dict)  # part number -> blocks


@dataclass
class _Part:
    info: pb.PartInfo
    blocks: list[Block]


@dataclass
class _Upload:
    info: pb.UploadInfo
    parts: dict[int, _Part] = field(default_factory=dict)


class MemoryNode:
    """One node's state and behaviour; implements NodeClient."""

    def __init__(self, name: str):
        self.name = name
        self.down = False
        self.paused = False
        self.fail_next: dict[str, NodeCallError] = {}
        self.delay: dict[str, float] = {}  # method -> seconds before it answers
        self.calls: list[str] = []
        self.buckets: dict[str, pb.BucketInfo] = {}
        self.configs: dict[tuple[str, str], bytes] = {}
        self.keys: dict[tuple[str, str], dict[str, _Version]] = {}
        self.pending: dict[str, dict[tuple[int, int], list[Block]]] = {}
        self.uploads: dict[str, _Upload] = {}

    # ---- failure injection ----

    def _error(self, code: grpc.StatusCode, reason: str = "") -> NodeCallError:
        return NodeCallError(self.name, code, reason)

    async def _enter(self, method: str, deadline: float) -> None:
        self.calls.append(method)
        if self.down:
            raise self._error(grpc.StatusCode.UNAVAILABLE)
        if self.paused:
            await asyncio.sleep(deadline)
            raise self._error(grpc.StatusCode.DEADLINE_EXCEEDED)
        if method in self.delay:
            await asyncio.sleep(self.delay[method])
        injected = self.fail_next.pop(method, None)
        if injected is not None:
            raise injected

    def corrupt_block(self, bucket: str, key: str, part: int, block: int) -> None:
        """Flip a byte of a stored block (the node's read-time hash check will catch it)."""
        for version in self.keys[(bucket, key)].values():
            blocks = version.shards.get(part)
            if blocks and block < len(blocks):
                data, digest = blocks[block]
                blocks[block] = (bytes([data[0] ^ 0xFF]) + data[1:], digest)

    # ---- NodeClient ----

    async def unary(self, method: str, request: Any, *, deadline: float) -> Any:
        await self._enter(method, deadline)
        return getattr(self, f"_{method}")(request)

    async def stream(self, method: str, request: Any, *, deadline: float,
                     idle_timeout: float) -> AsyncIterator[Any]:
        await self._enter(method, min(deadline, idle_timeout))
        for message in getattr(self, f"_{method}")(request):
            yield message
            await asyncio.sleep(0)
            if self.paused:
                await asyncio.sleep(idle_timeout)
                raise self._error(grpc.StatusCode.DEADLINE_EXCEEDED)

    async def write_shard(self, messages: AsyncIterator[pb.WriteShardMessage | bytes], *,
                          deadline: float, idle_timeout: float) -> pb.WriteShardReply:
        await self._enter("WriteShard", idle_timeout)
        header: pb.ShardHeader | None = None
        blocks: list[Block] = []
        commit: pb.CommitObjectRequest | None = None
        async for message in messages:
            if self.paused:
                await asyncio.sleep(idle_timeout)
                raise self._error(grpc.StatusCode.DEADLINE_EXCEEDED)
            if self.down:
                raise self._error(grpc.StatusCode.UNAVAILABLE)
            # a message may come serialized by the caller (common/shard_wire.py)
            msg = pb.WriteShardMessage.FromString(message) if isinstance(message, bytes) \
                else message
            if header is None:
                header = msg.header
                self._bucket(header.bucket)
                continue
            if commit is not None:
                raise self._error(grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument")
            if msg.HasField("commit"):
                commit = msg.commit
                continue
            sent = msg.blocks.blocks if msg.HasField("blocks") else [msg.block]
            for block in sent:
                if block_hash(header.geometry.hash, block.data) != block.hash:
                    raise self._error(grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument")
                blocks.append((block.data, block.hash))
        if header is None:
            raise self._error(grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument")
        return self._stage(header, blocks, commit)

    def _WriteShardOnce(self, request: pb.WriteShardOnceRequest | bytes) -> pb.WriteShardReply:
        r = pb.WriteShardOnceRequest.FromString(request) if isinstance(request, bytes) \
            else request
        if not r.HasField("header"):
            raise self._error(grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument")
        self._bucket(r.header.bucket)
        blocks: list[Block] = []
        for block in r.blocks.blocks:
            if block_hash(r.header.geometry.hash, block.data) != block.hash:
                raise self._error(grpc.StatusCode.INVALID_ARGUMENT, "InvalidArgument")
            blocks.append((block.data, block.hash))
        return self._stage(r.header, blocks, r.commit if r.HasField("commit") else None)

    def _stage(self, header: pb.ShardHeader, blocks: list[Block],
               commit: pb.CommitObjectRequest | None) -> pb.WriteShardReply:
        """A whole write received: staged, then committed when it came with its commit."""
        slot = self.pending.setdefault(header.data_id, {})
        slot[(header.part_number, header.shard_index)] = blocks
        reply = pb.WriteShardReply(blocks=len(blocks), bytes=sum(len(d) for d, _ in blocks))
        if commit is not None:  # fail_next["CommitObject"] fails this commit too
            injected = self.fail_next.pop("CommitObject", None)
            if injected is not None:
                raise injected  # the write stays staged, as on a real node
            reply.is_latest = self._CommitObject(commit).is_latest
            reply.committed = True
        return reply

    async def close(self) -> None:
        return None

    # ---- buckets ----

    def _bucket(self, bucket: str) -> pb.BucketInfo:
        if bucket not in self.buckets:
            raise self._error(grpc.StatusCode.NOT_FOUND, "NoSuchBucket")
        return self.buckets[bucket]

    def _MakeBucket(self, r: pb.MakeBucketRequest) -> pb.MakeBucketReply:
        if r.bucket in self.buckets:
            raise self._error(grpc.StatusCode.ALREADY_EXISTS, "BucketAlreadyExists")
        self.buckets[r.bucket] = pb.BucketInfo(name=r.bucket, created_ns=time.time_ns())
        return pb.MakeBucketReply()

    def _DeleteBucket(self, r: pb.DeleteBucketRequest) -> pb.DeleteBucketReply:
        self._bucket(r.bucket)
        for (bucket, _), versions in self.keys.items():
            if bucket == r.bucket and versions and not self._latest(versions).delete_marker:
                raise self._error(grpc.StatusCode.FAILED_PRECONDITION, "BucketNotEmpty")
        del self.buckets[r.bucket]
        self.keys = {k: v for k, v in self.keys.items() if k[0] != r.bucket}
        return pb.DeleteBucketReply()

    def _HeadBucket(self, r: pb.HeadBucketRequest) -> pb.BucketInfo:
        return self._bucket(r.bucket)

    def _ListBuckets(self, r: pb.ListBucketsRequest) -> pb.ListBucketsReply:
        return pb.ListBucketsReply(buckets=sorted(self.buckets.values(), key=lambda b: b.name))

    def _PutBucketConfig(self, r: pb.PutBucketConfigRequest) -> pb.PutBucketConfigReply:
        self._bucket(r.bucket)
        if r.value:
            self.configs[(r.bucket, r.name)] = r.value
        else:
            self.configs.pop((r.bucket, r.name), None)
        return pb.PutBucketConfigReply()

    def _GetBucketConfig(self, r: pb.GetBucketConfigRequest) -> pb.GetBucketConfigReply:
        self._bucket(r.bucket)
        value = self.configs.get((r.bucket, r.name))
        return pb.GetBucketConfigReply(found=value is not None, value=value or b"")

    # ---- versions ----

    @staticmethod
    def _latest(versions: dict[str, _Version]) -> pb.ObjectVersion:
        return versions[max(versions)].record

    def _AbortWrite(self, r: pb.AbortWriteRequest) -> pb.AbortWriteReply:
        self.pending.pop(r.data_id, None)
        return pb.AbortWriteReply()

    def _take_parts(self, r: pb.CommitObjectRequest) -> dict[int, list[Block]]:
        if r.upload_id:
            upload = self.uploads.get(r.upload_id)
            if upload is None:
                raise self._error(grpc.StatusCode.NOT_FOUND, "NoSuchUpload")
            shards = {}
            for ref in r.parts:
                part = upload.parts.get(ref.part_number)
                if part is None or part.info.data_id != ref.data_id:
                    raise self._error(grpc.StatusCode.FAILED_PRECONDITION, "WriteNotFound")
                shards[ref.part_number] = part.blocks
            del self.uploads[r.upload_id]
            return shards
        shards = {}
        for ref in r.parts:
            blocks = self.pending.get(ref.data_id, {}).get((ref.part_number, r.shard_index))
            if blocks is None:
                raise self._error(grpc.StatusCode.FAILED_PRECONDITION, "WriteNotFound")
            shards[ref.part_number] = blocks
        for ref in r.parts:
            self.pending.pop(ref.data_id, None)
        return shards

    def _CommitObject(self, r: pb.CommitObjectRequest) -> pb.CommitObjectReply:
        self._bucket(r.bucket)
        shards = {} if r.delete_marker else self._take_parts(r)
        record = pb.ObjectVersion(
            bucket=r.bucket, key=r.key, version_id=r.version_id, delete_marker=r.delete_marker,
            mod_time_ns=time.time_ns(), meta=r.meta, shard_index=r.shard_index,
            geometry=r.geometry, parts=r.parts,
            is_inline=not r.parts and not r.delete_marker, inline_shard=r.inline_shard)
        versions = self.keys.setdefault((r.bucket, r.key), {})
        is_latest = not versions or r.version_id > max(versions)
        versions[r.version_id] = _Version(record, shards)
        return pb.CommitObjectReply(is_latest=is_latest)

    def _version(self, bucket: str, key: str, version_id: str) -> _Version:
        self._bucket(bucket)
        versions = self.keys.get((bucket, key))
        if not versions:
            raise self._error(grpc.StatusCode.NOT_FOUND, "NoSuchKey")
        if version_id not in versions:
            raise self._error(grpc.StatusCode.NOT_FOUND, "NoSuchVersion")
        return versions[version_id]

    def _DeleteVersion(self, r: pb.DeleteVersionRequest) -> pb.DeleteVersionReply:
        self._version(r.bucket, r.key, r.version_id)
        versions = self.keys[(r.bucket, r.key)]
        del versions[r.version_id]
        if not versions:
            del self.keys[(r.bucket, r.key)]
        return pb.DeleteVersionReply()

    def _UpdateMeta(self, r: pb.UpdateMetaRequest) -> pb.UpdateMetaReply:
        self._version(r.bucket, r.key, r.version_id).record.meta = r.meta
        return pb.UpdateMetaReply()

    def _ReadMeta(self, r: pb.ReadMetaRequest) -> pb.ReadMetaReply:
        self._bucket(r.bucket)
        versions = self.keys.get((r.bucket, r.key))
        if not versions:
            raise self._error(grpc.StatusCode.NOT_FOUND, "NoSuchKey")
        chosen = ([self._version(r.bucket, r.key, r.version_id)] if r.version_id else
                  [versions[v] for v in sorted(versions, reverse=True)][: r.max_versions or 1])
        out = []
        for v in chosen:
            record = pb.ObjectVersion()
            record.CopyFrom(v.record)
            if not r.include_inline:
                record.ClearField("inline_shard")
            out.append(record)
        blocks = chosen[0].shards.get(1, []) if r.head_bytes else []
        algorithm = chosen[0].record.geometry.hash
        for data, digest in blocks[: max(1, r.head_bytes // max(1, len(blocks[0][0])))
                                   if blocks else 0]:
            if block_hash(algorithm, data) != digest:  # the good blocks before, as a node
                break
            out[0].head_blocks.add(data=data, hash=digest)
        return pb.ReadMetaReply(versions=out)

    def _ReadShardBlocks(self, r: pb.ReadShardRequest) -> Any:
        """Runs of up to 4 blocks, as (data, hash) lists like GrpcNodeClient yields them; a
        bad block ends the stream after the good blocks before it, as a real node does."""
        run: list[Block] = []
        try:
            for block in self._ReadShard(r):
                run.append((memoryview(block.data), block.hash))
                if len(run) == 4:
                    yield run
                    run = []
        except NodeCallError:
            if run:
                yield run
            raise
        if run:
            yield run

    def _ReadShard(self, r: pb.ReadShardRequest) -> Any:
        version = self._version(r.bucket, r.key, r.version_id)
        blocks = version.shards.get(r.part_number)
        if blocks is None:
            raise self._error(grpc.StatusCode.NOT_FOUND, "NoSuchPart")
        algorithm = version.record.geometry.hash
        end = len(blocks) if not r.block_count else min(len(blocks),
                                                        r.start_block + r.block_count)
        for data, digest in blocks[r.start_block:end]:
            if block_hash(algorithm, data) != digest:
                raise self._error(grpc.StatusCode.DATA_LOSS, "Corrupt")
            yield pb.ShardBlock(data=data, hash=digest)

    def _ListObjects(self, r: pb.ListObjectsRequest) -> Any:
        self._bucket(r.bucket)
        keys = sorted(k for b, k in self.keys if b == r.bucket and k.startswith(r.prefix)
                      and k > r.start_after)
        sent = 0
        for key in keys:
            latest = self._latest(self.keys[(r.bucket, key)])
            if latest.delete_marker and not r.include_delete_markers:
                continue
            record = pb.ObjectVersion()
            record.CopyFrom(latest)
            record.ClearField("inline_shard")
            yield record
            sent += 1
            if r.limit and sent >= r.limit:
                return

    def _ListObjectBatches(self, r: pb.ListObjectsRequest) -> Any:
        """The real node's batches, with its delimiter skip; a few entries per batch."""
        batch, group_end, sent = pb.ObjectVersionBatch(), "", 0
        for record in self._ListObjects(pb.ListObjectsRequest(
                bucket=r.bucket, prefix=r.prefix, start_after=r.start_after,
                include_delete_markers=r.include_delete_markers)):
            if group_end and record.key <= group_end:
                continue
            batch.entries.append(record)
            sent += 1
            cut = record.key.find(r.delimiter, len(r.prefix)) if r.delimiter else -1
            if cut >= 0 and not record.delete_marker:
                group_end = record.key[:cut + len(r.delimiter)] + "\U0010ffff"
            if r.limit and sent >= r.limit:
                break
            if len(batch.entries) == 3:
                yield batch
                batch = pb.ObjectVersionBatch()
        if batch.entries:
            yield batch

    # ---- multipart ----

    def _upload(self, upload_id: str) -> _Upload:
        if upload_id not in self.uploads:
            raise self._error(grpc.StatusCode.NOT_FOUND, "NoSuchUpload")
        return self.uploads[upload_id]

    def _CreateUpload(self, r: pb.CreateUploadRequest) -> pb.CreateUploadReply:
        self._bucket(r.bucket)
        self.uploads[r.upload_id] = _Upload(pb.UploadInfo(
            bucket=r.bucket, key=r.key, upload_id=r.upload_id, initiated_ns=time.time_ns(),
            meta=r.meta))
        return pb.CreateUploadReply()

    def _GetUpload(self, r: pb.GetUploadRequest) -> pb.UploadInfo:
        return self._upload(r.upload_id).info

    def _PutPart(self, r: pb.PutPartRequest) -> pb.PutPartReply:
        upload = self._upload(r.upload_id)
        blocks = self.pending.get(r.data_id, {}).get((r.part_number, r.shard_index))
        if blocks is None:
            raise self._error(grpc.StatusCode.FAILED_PRECONDITION, "WriteNotFound")
        self.pending.pop(r.data_id, None)
        upload.parts[r.part_number] = _Part(pb.PartInfo(
            part_number=r.part_number, data_id=r.data_id, mod_time_ns=time.time_ns(),
            meta=r.meta, shard_size=r.shard_size), blocks)
        return pb.PutPartReply()

    def _ListParts(self, r: pb.ListPartsRequest) -> pb.ListPartsReply:
        upload = self._upload(r.upload_id)
        parts = [upload.parts[n].info for n in sorted(upload.parts) if n > r.part_number_marker]
        return pb.ListPartsReply(parts=parts[: r.limit] if r.limit else parts)

    def _ListUploads(self, r: pb.ListUploadsRequest) -> pb.ListUploadsReply:
        self._bucket(r.bucket)
        found = sorted((u.info for u in self.uploads.values()
                        if u.info.bucket == r.bucket and u.info.key.startswith(r.prefix)),
                       key=lambda i: (i.key, i.upload_id))
        if r.upload_id_marker:
            found = [i for i in found
                     if (i.key, i.upload_id) > (r.key_marker, r.upload_id_marker)]
        elif r.key_marker:
            found = [i for i in found if i.key > r.key_marker]
        return pb.ListUploadsReply(uploads=found[: r.limit] if r.limit else found)

    def _AbortUpload(self, r: pb.AbortUploadRequest) -> pb.AbortUploadReply:
        self._upload(r.upload_id)
        del self.uploads[r.upload_id]
        return pb.AbortUploadReply()

    def _Stat(self, r: pb.StatRequest) -> pb.StatReply:
        return pb.StatReply(node_id=self.name, version="memory",
                            pending_writes=len(self.pending))
