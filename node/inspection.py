"""Node state and per-key inspection: Stat, InspectKey, VerifyShard (healing and scanner)."""

from __future__ import annotations

import sqlite3
import threading
import time
from importlib import metadata

from proto import storage_pb2 as pb

from . import validate, versions
from .config import NodeConfig
from .convert import version_msg
from .errors import Corrupt
from .metastore import MetaStore
from .records import PartRecord, VersionRecord
from .shardstore import ShardReader, ShardStore
from .writes import PendingWrites

__all__ = ["InspectOps", "node_version"]

_STAT_TTL = 2.0  # seconds a Stat count may be stale: counting is a scan of the index


def node_version() -> str:
    try:
        return metadata.version("tessera")
    except metadata.PackageNotFoundError:
        return "unknown"


def _counts(conn: sqlite3.Connection) -> tuple[int, int]:
    objects = conn.execute("SELECT COUNT(*) FROM versions INDEXED BY versions_latest "
                           "WHERE is_latest = 1 AND delete_marker = 0").fetchone()[0]
    stored = conn.execute("SELECT (SELECT COALESCE(SUM(file_size), 0) FROM parts) + "
                          "(SELECT COALESCE(SUM(file_size), 0) FROM upload_parts)").fetchone()[0]
    return objects, stored


class InspectOps:
    config: NodeConfig
    meta: MetaStore
    shards: ShardStore
    writes: PendingWrites
    started: float
    _stat_cache: tuple[float, tuple[int, int]] | None = None
    _stat_lock = threading.Lock()

    def open_shard(self, v: VersionRecord, part: PartRecord) -> ShardReader:
        """A reader for one part's file; a file missing under a live row is Corrupt."""
        assert v.geometry is not None
        try:
            return self.shards.open_reader(part.file_id, v.geometry.layout(part.shard_size),
                                           v.geometry.hash_algorithm)
        except FileNotFoundError:
            # collected or rolled back since we looked it up? then say so (NoSuchVersion)
            self.meta.read(lambda c: versions.read_versions(
                c, v.bucket, v.key, v.version_id, 1))
            raise Corrupt(f"shard file of {v.key!r} version {v.version_id} part "
                          f"{part.part_number} is missing") from None

    def Stat(self, req: pb.StatRequest) -> pb.StatReply:
        total, free = self.shards.disk_usage()
        now = time.monotonic()
        with self._stat_lock:
            cached = self._stat_cache
            if cached is None or now - cached[0] > _STAT_TTL:
                cached = (now, self.meta.read(_counts))
                self._stat_cache = cached
        objects, stored = cached[1]
        return pb.StatReply(
            node_id=self.config.node_id, version=node_version(),
            uptime_seconds=now - self.started, disk_total=total, disk_free=free,
            objects=objects, bytes=stored, data_dir=str(self.config.data_dir),
            pending_writes=self.writes.count())

    def InspectKey(self, req: pb.InspectKeyRequest) -> pb.InspectKeyReply:
        bucket, key = validate.bucket_name(req.bucket), validate.object_key(req.key)
        found = self.meta.read(lambda c: versions.inspect_key(c, bucket, key))
        reply = pb.InspectKeyReply()
        for v in found:
            record = reply.versions.add(version=version_msg(v), is_latest=v.is_latest)
            record.shards.extend(self._shard_file(v, p, req.with_hashes) for p in v.parts)
        return reply

    def _shard_file(self, v: VersionRecord, part: PartRecord, with_hashes: bool) -> pb.ShardFile:
        size = self.shards.file_size(part.file_id)
        msg = pb.ShardFile(part_number=part.part_number, data_id=part.data_id,
                           shard_size=part.shard_size, file_size=size or 0,
                           present=size is not None, file=self.shards.relative_path(part.file_id))
        if with_hashes and size is not None and v.geometry is not None:
            try:
                with self.open_shard(v, part) as reader:
                    msg.block_hashes.extend(reader.read_hash(b)
                                            for b in range(reader.layout.blocks))
            except Corrupt:
                msg.present = False
        return msg

    def VerifyShard(self, req: pb.VerifyShardRequest) -> pb.VerifyShardReply:
        bucket, key = validate.bucket_name(req.bucket), validate.object_key(req.key)
        version_id = validate.version_id(req.version_id) if req.version_id else ""
        (v, digest), = self.meta.read(lambda c: versions.read_versions(
            c, bucket, key, version_id, 1, with_inline=True))
        reply = pb.VerifyShardReply()
        if v.is_inline:
            try:
                self.checked_inline(v, digest)  # type: ignore[attr-defined]
            except Corrupt:
                reply.bad_blocks.add(part_number=1, block=0)
        for part in v.parts:
            try:
                reader = self.open_shard(v, part)
            except Corrupt:
                reply.missing_parts.append(part.part_number)
                continue
            with reader:
                for block in reader.bad_blocks():
                    reply.bad_blocks.add(part_number=part.part_number, block=block)
        reply.ok = not reply.missing_parts and not reply.bad_blocks
        return reply
