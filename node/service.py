"""The Storage service, transport-free: each RPC as a method taking and returning protobuf
messages and raising NodeError. `server.py` / `aio_server.py` put it on the wire."""

from __future__ import annotations

import time
from collections.abc import Iterator

from common import bitrot
from common.shard_wire import Block, WriteItem
from proto import storage_pb2 as pb

from . import uploads, validate, versions
from .commit import commit_with_files, restore_staged
from .config import NodeConfig
from .convert import version_msg
from .errors import Corrupt, InvalidArgument, NodeError, NoSuchPart, NoSuchUpload
from .inspection import InspectOps
from .metastore import MetaStore
from .multipart import MultipartOps
from .records import Geometry, PartRecord, VersionRecord
from .shardstore import ShardStore
from .writes import PendingWrites, StagedWrite, WriteKey

__all__ = ["BATCH_BYTES", "ShardIngest", "StorageService", "write_blocks", "write_commit",
           "write_header"]

_LIST_PAGE = 1000
_LIST_JUMP_PAGE = 32
_LIST_BATCH_BYTES = 256 << 10  # per ListObjectBatches message
# Sorts after every key that starts with a given common prefix (the highest code point).
PAST_GROUP = "\U0010ffff"
_MAX_VERSIONS = 1000
BATCH_BYTES = 1 << 20  # shard data per ReadShardBlocks message (and per disk read)


def _write_geometry(msg: pb.ShardHeader | pb.CommitObjectRequest) -> Geometry:
    if not msg.HasField("geometry"):
        raise InvalidArgument("geometry is required")
    return validate.geometry(msg.geometry, msg.shard_index)


class ShardIngest:
    """One WriteShard stream: a checked header, then blocks appended to a tmp/ file."""

    def __init__(self, service: StorageService, header: pb.ShardHeader):
        self.bucket = validate.bucket_name(header.bucket)
        self.key = validate.object_key(header.key)
        self.data_id = validate.token(header.data_id, "data_id")
        self.part_number = validate.part_number(header.part_number)
        self.upload_id = validate.token(header.upload_id, "upload_id") if header.upload_id else ""
        self.shard_index = header.shard_index
        self.write_key: WriteKey = (self.data_id, self.part_number, self.shard_index)
        self.geometry = _write_geometry(header)
        service.meta.read(lambda c: versions.require_bucket(c, self.bucket))
        self._service = service
        self._writer = service.shards.new_writer(self.geometry.hash_algorithm,
                                                 self.geometry.shard_block_size)
        self.file_id = self._writer.file_id
        service.writes.begin_stream(self._writer.file_id)

    def add(self, blocks: list[Block]) -> None:
        for data, digest in blocks:
            self._writer.write_block(data, digest)

    def finish(self) -> pb.WriteShardReply:
        """fsync, then stage the write for CommitObject / PutPart."""
        w = self._writer
        try:
            w.finish()
            staged = StagedWrite(
                key=self.write_key, bucket=self.bucket,
                object_key=self.key, upload_id=self.upload_id, geometry=self.geometry,
                file_id=w.file_id, blocks=w.blocks, shard_size=w.bytes, file_size=w.file_size)
            replaced = self._service.writes.stage(staged)
        except BaseException:
            self.abort()
            raise
        self._service.writes.end_stream(w.file_id)
        if replaced is not None:
            self._service.shards.discard_tmp([replaced.file_id])
        return pb.WriteShardReply(blocks=w.blocks, bytes=w.bytes)

    def abort(self) -> None:
        self._writer.abort()
        self._service.writes.end_stream(self._writer.file_id)

    def check_commit(self, req: pb.CommitObjectRequest) -> None:
        """A commit ending this stream must commit this write and nothing else."""
        parts = [(p.part_number, p.data_id) for p in req.parts]
        if (req.bucket, req.key, req.shard_index) != (self.bucket, self.key, self.shard_index) \
                or parts != [(self.part_number, self.data_id)] or req.upload_id \
                or req.delete_marker or req.inline_shard:
            raise InvalidArgument("the commit ending a WriteShard stream must commit that "
                                  "stream's write alone")


class StorageService(MultipartOps, InspectOps):
    """Every RPC of proto/storage.proto over one data directory."""

    def __init__(self, config: NodeConfig, meta: MetaStore, shards: ShardStore,
                 writes: PendingWrites):
        self.config = config
        self.meta = meta
        self.shards = shards
        self.writes = writes
        self.started = time.monotonic()

    # ---- buckets ----

    def MakeBucket(self, req: pb.MakeBucketRequest) -> pb.MakeBucketReply:
        name = validate.bucket_name(req.bucket)
        self.meta.write(lambda c: versions.make_bucket(c, name, time.time_ns()))
        return pb.MakeBucketReply()

    def DeleteBucket(self, req: pb.DeleteBucketRequest) -> pb.DeleteBucketReply:
        name = validate.bucket_name(req.bucket)
        self.shards.delete(self.meta.write(lambda c: versions.delete_bucket(c, name)))
        return pb.DeleteBucketReply()

    def HeadBucket(self, req: pb.HeadBucketRequest) -> pb.BucketInfo:
        name = validate.bucket_name(req.bucket)
        created = self.meta.read(lambda c: versions.require_bucket(c, name))
        return pb.BucketInfo(name=name, created_ns=created)

    def ListBuckets(self, req: pb.ListBucketsRequest) -> pb.ListBucketsReply:
        rows = self.meta.read(versions.list_buckets)
        return pb.ListBucketsReply(buckets=[pb.BucketInfo(name=n, created_ns=c) for n, c in rows])

    def PutBucketConfig(self, req: pb.PutBucketConfigRequest) -> pb.PutBucketConfigReply:
        bucket = validate.bucket_name(req.bucket)
        name = validate.token(req.name, "config name")
        value = validate.meta_blob(req.value)
        self.meta.write(lambda c: versions.put_bucket_config(c, bucket, name, value))
        return pb.PutBucketConfigReply()

    def GetBucketConfig(self, req: pb.GetBucketConfigRequest) -> pb.GetBucketConfigReply:
        bucket = validate.bucket_name(req.bucket)
        name = validate.token(req.name, "config name")
        value = self.meta.read(lambda c: versions.get_bucket_config(c, bucket, name))
        return pb.GetBucketConfigReply(found=value is not None, value=value or b"")

    # ---- shard writes ----

    def begin_write(self, header: pb.ShardHeader) -> ShardIngest:
        return ShardIngest(self, header)

    def WriteShard(self, messages: Iterator[WriteItem | pb.WriteShardMessage]
                   ) -> pb.WriteShardReply:
        return self.write_shard(messages)[1]

    def WriteShardOnce(self, items: list[WriteItem]) -> pb.WriteShardReply:
        return self.write_shard(iter(items))[1]

    def write_shard(self, messages: Iterator[WriteItem | pb.WriteShardMessage]
                    ) -> tuple[ShardIngest, pb.WriteShardReply]:
        """The whole stream: header, blocks, then fsync and staging (and the commit that
        may end the stream). WriteShardOnce is the same, its request cut into these items
        (common/shard_wire.py: decode_write_once)."""
        ingest = self.begin_write(write_header(next(messages, None)))
        commit = None
        try:
            for msg in messages:
                if commit is not None:
                    raise InvalidArgument("nothing may follow the commit of a WriteShard "
                                          "stream")
                commit = write_commit(msg)
                if commit is None:
                    ingest.add(write_blocks(msg))
            if commit is not None:
                ingest.check_commit(commit)
        except BaseException:
            ingest.abort()
            raise
        return ingest, self.finish_write(ingest, commit)

    def finish_write(self, ingest: ShardIngest,
                     commit: pb.CommitObjectRequest | None) -> pb.WriteShardReply:
        """Make the write durable and stage it; then apply its commit, if it came with one
        (a failed commit leaves the write staged, as a failed CommitObject does)."""
        reply = ingest.finish()
        if commit is not None:
            reply.is_latest = self.CommitObject(commit).is_latest
            reply.committed = True
        return reply

    def drop_staged(self, key: WriteKey, file_id: str) -> None:
        """Forget a staged write (if it is still the one in `file_id`) and remove its data."""
        claimed = self.writes.claim([key])
        if key in claimed and claimed[key].file_id != file_id:
            restore_staged(self.writes, self.shards, claimed.values())
        else:
            self.shards.discard_tmp([file_id])

    def AbortWrite(self, req: pb.AbortWriteRequest) -> pb.AbortWriteReply:
        data_id = validate.token(req.data_id, "data_id")
        self.shards.discard_tmp(w.file_id for w in self.writes.drop_data(data_id))
        return pb.AbortWriteReply()

    # ---- commit, delete, update ----

    def CommitObject(self, req: pb.CommitObjectRequest) -> pb.CommitObjectReply:
        new = self._new_version(req)
        if req.upload_id:
            upload_id = validate.token(req.upload_id, "upload_id")
            wanted = [(p.part_number, p.data_id, p.shard_size) for p in new.parts]
            job = self._completion_job(new, upload_id, wanted)
            staged: list[StagedWrite] = []
        else:
            staged = self._claim_parts(new)
            job = lambda c: versions.commit_version(c, new)  # noqa: E731
        is_latest = commit_with_files(self.meta, self.shards, self.writes, staged, job)
        return pb.CommitObjectReply(is_latest=is_latest)

    def _new_version(self, req: pb.CommitObjectRequest) -> versions.NewVersion:
        bucket = validate.bucket_name(req.bucket)
        key = validate.object_key(req.key)
        version_id = validate.version_id(req.version_id)
        geometry = None
        inline = inline_hash = None
        if req.delete_marker:
            if req.parts or req.inline_shard or req.upload_id:
                raise InvalidArgument("a delete marker has no parts and no inline shard")
        else:
            geometry = _write_geometry(req)
            if req.parts and req.inline_shard:
                raise InvalidArgument("a version has either parts or an inline shard")
            if not req.parts:
                if req.upload_id:
                    raise InvalidArgument("completing an upload needs its parts")
                if len(req.inline_shard) > validate.MAX_INLINE:
                    raise InvalidArgument(f"inline shard over {validate.MAX_INLINE} bytes")
                inline = bytes(req.inline_shard)
                inline_hash = bitrot.block_hash(bitrot.XXH3_128, inline)
        numbers = [validate.part_number(p.part_number) for p in req.parts]
        if numbers != sorted(set(numbers)):
            raise InvalidArgument("part numbers must be unique and ascending")
        parts = [PartRecord(n, validate.token(p.data_id, "data_id"), p.shard_size, "", 0)
                 for n, p in zip(numbers, req.parts, strict=True)]
        return versions.NewVersion(
            bucket=bucket, key=key, version_id=version_id, delete_marker=req.delete_marker,
            meta=validate.meta_blob(req.meta), shard_index=req.shard_index, geometry=geometry,
            parts=parts, inline_shard=inline, inline_hash=inline_hash, now_ns=time.time_ns())

    def _claim_parts(self, new: versions.NewVersion) -> list[StagedWrite]:
        """Take the staged writes the parts name; parts without one keep an empty file id."""
        keys = [(p.data_id, p.part_number, new.shard_index) for p in new.parts]
        claimed = self.writes.claim(keys)
        try:
            for i, (p, k) in enumerate(zip(new.parts, keys, strict=True)):
                w = claimed.get(k)
                if w is None:
                    continue
                if (w.bucket, w.object_key, w.upload_id) != (new.bucket, new.key, ""):
                    raise InvalidArgument(f"data {p.data_id} was written for another object")
                if w.geometry != new.geometry:
                    raise InvalidArgument(f"data {p.data_id} was written with another geometry")
                if w.shard_size != p.shard_size:
                    raise InvalidArgument(f"part {p.part_number}: shard_size {p.shard_size}, "
                                          f"written {w.shard_size}")
                new.parts[i] = PartRecord(p.part_number, p.data_id, p.shard_size, w.file_id,
                                          w.file_size)
        except BaseException:
            restore_staged(self.writes, self.shards, claimed.values())
            raise
        return list(claimed.values())

    @staticmethod
    def _completion_job(new: versions.NewVersion, upload_id: str,
                        wanted: list[tuple[int, str, int]]):
        def job(conn):
            try:
                new.parts, dropped = uploads.take_parts(
                    conn, upload_id, new.bucket, new.key, new.shard_index, new.geometry, wanted)
            except NoSuchUpload:
                # a retried completion: fine if the version already holds exactly these parts
                if not conn.execute("SELECT 1 FROM versions WHERE bucket = ? AND key = ? AND "
                                    "version_id = ?", (new.bucket, new.key,
                                                       new.version_id)).fetchone():
                    raise
                dropped = []
            is_latest, obsolete = versions.commit_version(conn, new)
            return is_latest, obsolete + dropped
        return job

    def DeleteVersion(self, req: pb.DeleteVersionRequest) -> pb.DeleteVersionReply:
        bucket, key = validate.bucket_name(req.bucket), validate.object_key(req.key)
        version_id = validate.version_id(req.version_id)
        files = self.meta.write(
            lambda c: versions.delete_version(c, bucket, key, version_id, time.time_ns()))
        self.shards.delete(files)
        return pb.DeleteVersionReply()

    def UpdateMeta(self, req: pb.UpdateMetaRequest) -> pb.UpdateMetaReply:
        bucket, key = validate.bucket_name(req.bucket), validate.object_key(req.key)
        version_id = validate.version_id(req.version_id)
        meta = validate.meta_blob(req.meta)
        self.meta.write(lambda c: versions.update_meta(c, bucket, key, version_id, meta))
        return pb.UpdateMetaReply()

    # ---- reads ----

    def ReadMeta(self, req: pb.ReadMetaRequest) -> pb.ReadMetaReply:
        bucket, key = validate.bucket_name(req.bucket), validate.object_key(req.key)
        version_id = validate.version_id(req.version_id) if req.version_id else ""
        limit = min(req.max_versions or 1, _MAX_VERSIONS)
        found = self.meta.read(lambda c: versions.read_versions(
            c, bucket, key, version_id, limit, with_inline=req.include_inline))
        for v, digest in found:
            if v.inline_shard is not None:
                self.checked_inline(v, digest)
        reply = pb.ReadMetaReply(versions=[version_msg(v) for v, _ in found])
        if req.head_bytes and found:
            reply.versions[0].head_blocks.extend(
                pb.ShardBlock(data=bytes(data), hash=digest)
                for data, digest in self._head_blocks(found[0][0], req.head_bytes))
        return reply

    def _head_blocks(self, v: VersionRecord, limit: int) -> list[Block]:
        """Up to `limit` bytes of whole blocks from the start of part 1 of `v`'s shard file;
        none when it has none or they cannot be read intact (ReadShard will say why)."""
        part = next((p for p in v.parts if p.part_number == 1), None)
        if v.is_inline or v.geometry is None or part is None or not part.shard_size:
            return []
        count = max(1, limit // v.geometry.shard_block_size)
        try:
            with self.open_shard(v, part) as reader:
                return reader.read_run(0, min(count, reader.layout.blocks))
        except (NodeError, OSError):  # gone or corrupt: the shard's own read reports it
            return []

    @staticmethod
    def checked_inline(v: VersionRecord, digest: bytes) -> bytes:
        data = v.inline_shard or b""
        if bitrot.block_hash(bitrot.XXH3_128, data) != digest:
            raise Corrupt(f"inline shard of {v.key!r} version {v.version_id} fails its hash")
        return data

    def ReadShard(self, req: pb.ReadShardRequest) -> Iterator[pb.ShardBlock]:
        for run in self._read_runs(req, 1):
            for data, digest in run:
                yield pb.ShardBlock(data=bytes(data), hash=digest)

    def ReadShardBlocks(self, req: pb.ReadShardRequest) -> Iterator[list[Block]]:
        """ReadShard in runs of up to BATCH_BYTES of shard data (the transport encodes each
        run as one ShardBlocks message, common/shard_wire.py)."""
        yield from self._read_runs(req, 0)

    def _read_runs(self, req: pb.ReadShardRequest, per_run: int) -> Iterator[list[Block]]:
        """Verified blocks of the request, `per_run` per list (0: as many as BATCH_BYTES)."""
        bucket, key = validate.bucket_name(req.bucket), validate.object_key(req.key)
        version_id = validate.version_id(req.version_id) if req.version_id else ""
        number = validate.part_number(req.part_number)
        v, digest = self.meta.read(
            lambda c: versions.version_for_read(c, bucket, key, version_id))
        assert v.geometry is not None
        per_run = per_run or max(1, BATCH_BYTES // v.geometry.shard_block_size)
        if v.is_inline:
            if number != 1:
                raise NoSuchPart(f"inline object {key!r} has only part 1")
            data = self.checked_inline(v, digest)
            for block in _inline_blocks(data, v.geometry, req.start_block, req.block_count):
                yield [block]
            return
        part = next((p for p in v.parts if p.part_number == number), None)
        if part is None:
            raise NoSuchPart(f"version {v.version_id} of {key!r} has no part {number}")
        layout = v.geometry.layout(part.shard_size)
        if req.start_block > layout.blocks:
            raise InvalidArgument(f"start_block {req.start_block} beyond {layout.blocks} blocks")
        with self.open_shard(v, part) as reader:
            yield from reader.runs(req.start_block, req.block_count, per_run)

    def ListObjects(self, req: pb.ListObjectsRequest) -> Iterator[pb.ObjectVersion]:
        for v in self._latest(req, delimiter=""):
            yield version_msg(v, with_parts=False)

    def ListObjectBatches(self, req: pb.ListObjectsRequest) -> Iterator[pb.ObjectVersionBatch]:
        batch, size = pb.ObjectVersionBatch(), 0
        for v in self._latest(req, delimiter=req.delimiter):
            batch.entries.append(version_msg(v, with_parts=False))
            size += len(v.key) + len(v.meta) + 64
            if size >= _LIST_BATCH_BYTES or len(batch.entries) >= _LIST_PAGE:
                yield batch
                batch, size = pb.ObjectVersionBatch(), 0
        if batch.entries:
            yield batch

    def _latest(self, req: pb.ListObjectsRequest, delimiter: str) -> Iterator[VersionRecord]:
        """The request's latest versions in key order; with a delimiter, a common prefix's
        keys after its first one that is not a delete marker are skipped."""
        bucket = validate.bucket_name(req.bucket)
        prefix, after = req.prefix, req.start_after or None
        self.meta.read(lambda c: versions.require_bucket(c, bucket))
        left = req.limit or None
        # a jump wastes the rest of a page read: after one, read a few rows, then more
        step = _LIST_JUMP_PAGE if delimiter else _LIST_PAGE
        while left is None or left > 0:
            page = step if left is None else min(step, left)
            rows = self.meta.read(lambda c, a=after, n=page: versions.list_latest(
                c, bucket, prefix, a, req.include_delete_markers, n))
            jumped = False
            for v in rows:
                if not v.key.startswith(prefix):
                    return
                yield v
                after = v.key
                if left is not None:
                    left -= 1
                cut = v.key.find(delimiter, len(prefix)) if delimiter else -1
                if cut >= 0 and not v.delete_marker:
                    after, jumped = v.key[:cut + len(delimiter)] + PAST_GROUP, True
                    break
            if left == 0 or (not jumped and len(rows) < page):
                return
            step = _LIST_JUMP_PAGE if jumped else min(step * 4, _LIST_PAGE)


def _inline_blocks(data: bytes, geometry: Geometry, start: int, count: int) -> Iterator[Block]:
    """An inline shard served as blocks, exactly as if it were a shard file."""
    layout = geometry.layout(len(data))
    if start > layout.blocks:
        raise InvalidArgument(f"start_block {start} beyond {layout.blocks} blocks")
    end = layout.blocks if count == 0 else min(layout.blocks, start + count)
    for block in range(start, end):
        chunk = data[block * layout.block_size:(block + 1) * layout.block_size]
        yield chunk, bitrot.block_hash(geometry.hash_algorithm, chunk)


def write_header(msg: WriteItem | pb.WriteShardMessage | None) -> pb.ShardHeader:
    """The header that must open a WriteShard stream (decoded by the transport, or a
    protobuf message when called directly)."""
    if isinstance(msg, WriteItem) and msg.header is not None:
        return pb.ShardHeader.FromString(bytes(msg.header))
    if isinstance(msg, pb.WriteShardMessage) and msg.WhichOneof("msg") == "header":
        return msg.header
    raise InvalidArgument("a WriteShard stream starts with a ShardHeader")


def write_commit(msg: WriteItem | pb.WriteShardMessage) -> pb.CommitObjectRequest | None:
    """The commit a WriteShard message carries, if it is the stream's commit."""
    if isinstance(msg, WriteItem):
        return None if msg.commit is None else pb.CommitObjectRequest.FromString(
            bytes(msg.commit))
    return msg.commit if msg.WhichOneof("msg") == "commit" else None


def write_blocks(msg: WriteItem | pb.WriteShardMessage) -> list[Block]:
    """The blocks of a WriteShard message after the header (at least one)."""
    blocks: list[Block] = []
    if isinstance(msg, WriteItem) and msg.header is None and msg.commit is None:
        blocks = msg.blocks
    elif isinstance(msg, pb.WriteShardMessage) and msg.WhichOneof("msg") == "block":
        blocks = [(msg.block.data, msg.block.hash)]
    elif isinstance(msg, pb.WriteShardMessage) and msg.WhichOneof("msg") == "blocks":
        blocks = [(b.data, b.hash) for b in msg.blocks.blocks]
    if not blocks:
        raise InvalidArgument("only shard blocks may follow the header")
    return blocks
