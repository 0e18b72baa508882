"""The multipart RPCs of the Storage service (completion is CommitObject with upload_id)."""

from __future__ import annotations

import time

from proto import storage_pb2 as pb

from . import uploads, validate
from .commit import commit_with_files, restore_staged
from .convert import part_info_msg, upload_msg
from .errors import InvalidArgument
from .metastore import MetaStore
from .records import UploadPartRecord, UploadRecord
from .shardstore import ShardStore
from .writes import PendingWrites

__all__ = ["MultipartOps"]


class MultipartOps:
    meta: MetaStore
    shards: ShardStore
    writes: PendingWrites

    def CreateUpload(self, req: pb.CreateUploadRequest) -> pb.CreateUploadReply:
        upload = UploadRecord(
            bucket=validate.bucket_name(req.bucket), key=validate.object_key(req.key),
            upload_id=validate.token(req.upload_id, "upload_id"),
            initiated_ns=time.time_ns(), meta=validate.meta_blob(req.meta))
        self.meta.write(lambda c: uploads.create_upload(c, upload))
        return pb.CreateUploadReply()

    def GetUpload(self, req: pb.GetUploadRequest) -> pb.UploadInfo:
        upload_id = validate.token(req.upload_id, "upload_id")
        return upload_msg(self.meta.read(lambda c: uploads.get_upload(c, upload_id)))

    def PutPart(self, req: pb.PutPartRequest) -> pb.PutPartReply:
        """Move a written attempt into the upload; a replaced attempt's file is dropped."""
        upload_id = validate.token(req.upload_id, "upload_id")
        data_id = validate.token(req.data_id, "data_id")
        number = validate.part_number(req.part_number)
        if not req.HasField("geometry"):
            raise InvalidArgument("geometry is required")
        geometry = validate.geometry(req.geometry, req.shard_index)
        key = (data_id, number, req.shard_index)
        claimed = self.writes.claim([key])
        staged = claimed.get(key)
        try:
            if staged is not None:
                if staged.upload_id != upload_id:
                    raise InvalidArgument(f"data {data_id} was not written for this upload")
                if staged.geometry != geometry:
                    raise InvalidArgument(f"data {data_id} was written with another geometry")
                if staged.shard_size != req.shard_size:
                    raise InvalidArgument(f"shard_size {req.shard_size}, written "
                                          f"{staged.shard_size}")
        except BaseException:
            restore_staged(self.writes, self.shards, claimed.values())
            raise
        part = UploadPartRecord(
            upload_id=upload_id, part_number=number, data_id=data_id,
            shard_index=req.shard_index, geometry=geometry, shard_size=req.shard_size,
            file_id=staged.file_id if staged else "", file_size=staged.file_size if staged else 0,
            mod_time_ns=time.time_ns(), meta=validate.meta_blob(req.meta))
        written_for = (staged.bucket, staged.object_key) if staged else None
        commit_with_files(self.meta, self.shards, self.writes, list(claimed.values()),
                          lambda c: (None, uploads.put_part(c, part, written_for)))
        return pb.PutPartReply()

    def ListParts(self, req: pb.ListPartsRequest) -> pb.ListPartsReply:
        upload_id = validate.token(req.upload_id, "upload_id")
        parts = self.meta.read(lambda c: uploads.list_parts(
            c, upload_id, req.part_number_marker, req.limit))
        return pb.ListPartsReply(parts=[part_info_msg(p) for p in parts])

    def ListUploads(self, req: pb.ListUploadsRequest) -> pb.ListUploadsReply:
        bucket = validate.bucket_name(req.bucket)
        found = self.meta.read(lambda c: uploads.list_uploads(
            c, bucket, req.prefix, req.key_marker, req.upload_id_marker, req.limit))
        return pb.ListUploadsReply(uploads=[upload_msg(u) for u in found])

    def AbortUpload(self, req: pb.AbortUploadRequest) -> pb.AbortUploadReply:
        upload_id = validate.token(req.upload_id, "upload_id")
        self.shards.delete(self.meta.write(lambda c: uploads.abort_upload(c, upload_id)))
        return pb.AbortUploadReply()
