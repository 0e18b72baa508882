"""Records to protobuf messages (the node's replies)."""

from __future__ import annotations

from proto import storage_pb2 as pb

from .records import Geometry, PartRecord, UploadPartRecord, UploadRecord, VersionRecord

__all__ = ["geometry_msg", "part_info_msg", "part_ref_msg", "upload_msg", "version_msg"]


def geometry_msg(g: Geometry | None) -> pb.Geometry | None:
    if g is None:
        return None
    return pb.Geometry(data_shards=g.data_shards, parity_shards=g.parity_shards,
                       block_size=g.block_size, shard_block_size=g.shard_block_size,
                       hash=g.hash_algorithm)  # type: ignore[arg-type]


def part_ref_msg(p: PartRecord) -> pb.PartRef:
    return pb.PartRef(part_number=p.part_number, data_id=p.data_id, shard_size=p.shard_size)


def version_msg(v: VersionRecord, with_parts: bool = True) -> pb.ObjectVersion:
    msg = pb.ObjectVersion(
        bucket=v.bucket, key=v.key, version_id=v.version_id, delete_marker=v.delete_marker,
        mod_time_ns=v.mod_time_ns, meta=v.meta, shard_index=v.shard_index,
        is_inline=v.is_inline)
    if v.geometry is not None:
        msg.geometry.CopyFrom(geometry_msg(v.geometry))
    if with_parts:
        msg.parts.extend(part_ref_msg(p) for p in v.parts)
    if v.inline_shard is not None:
        msg.inline_shard = v.inline_shard
    return msg


def upload_msg(u: UploadRecord) -> pb.UploadInfo:
    return pb.UploadInfo(bucket=u.bucket, key=u.key, upload_id=u.upload_id,
                         initiated_ns=u.initiated_ns, meta=u.meta)


def part_info_msg(p: UploadPartRecord) -> pb.PartInfo:
    return pb.PartInfo(part_number=p.part_number, data_id=p.data_id,
                       mod_time_ns=p.mod_time_ns, meta=p.meta, shard_size=p.shard_size)
