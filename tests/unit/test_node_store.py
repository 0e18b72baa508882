"""Unit tests of the node's stores on a temporary directory (no processes, no gRPC)."""

from __future__ import annotations

import errno
import os
import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from common import bitrot
from node.config import ConfigError, parse_args
from node.errors import Corrupt, DiskFull, DiskIOError, InvalidArgument, NoSuchBucket, translate
from node.gc import Collector
from node.metastore import MetaStore
from node.records import BlockLayout, Geometry
from node.service import StorageService
from node.shardstore import ShardStore
from node.writes import PendingWrites
from proto import storage_pb2 as pb
from tests.nodeclient import GEOMETRY, blocks_of, uuid7

G = Geometry(4, 2, 64 * 1024, 16 * 1024, bitrot.XXH3_128)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[StorageService]:
    config = parse_args(["--data", str(tmp_path), "--listen", "127.0.0.1:1", "--node-id", "u",
                         "--insecure"])
    shards, meta = ShardStore(tmp_path), MetaStore(tmp_path / "meta.db")
    shards.prepare()
    meta.open()
    svc = StorageService(config, meta, shards, PendingWrites())
    svc.MakeBucket(pb.MakeBucketRequest(bucket="unit"))
    yield svc
    meta.close()


def test_block_layout() -> None:
    layout = BlockLayout(shard_size=2 * 100 + 30, block_size=100, hash_len=16)
    assert (layout.blocks, layout.stride, layout.file_size) == (3, 116, 230 + 48)
    assert [layout.data_len(i) for i in range(3)] == [100, 100, 30]
    assert layout.offset(2) == 232
    assert BlockLayout(0, 100, 16).blocks == 0


def test_writer_and_reader(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    store.prepare()
    writer = store.new_writer(bitrot.SHA256, 100)
    data = os.urandom(250)
    for i in range(0, 250, 100):
        chunk = data[i:i + 100]
        writer.write_block(chunk, bitrot.block_hash(bitrot.SHA256, chunk))
    with pytest.raises(InvalidArgument):  # nothing may follow a short block
        writer.write_block(b"x" * 100, bitrot.block_hash(bitrot.SHA256, b"x" * 100))
    writer.finish()
    store.promote([writer.file_id])
    store.settle([writer.file_id])
    layout = BlockLayout(250, 100, 32)
    with store.open_reader(writer.file_id, layout, bitrot.SHA256) as reader:
        assert b"".join(d for d, _ in reader.blocks(0, 0)) == data
        assert reader.bad_blocks() == []
    path = store.shard_path(writer.file_id)
    raw = bytearray(path.read_bytes())
    raw[132 + 32 + 5] ^= 1  # a byte of block 1's data
    path.write_bytes(bytes(raw))
    with store.open_reader(writer.file_id, layout, bitrot.SHA256) as reader:
        assert reader.bad_blocks() == [1]
        with pytest.raises(Corrupt):
            reader.read_block(1)


def test_writer_refuses_bad_hash_and_abort_removes_file(tmp_path: Path) -> None:
    store = ShardStore(tmp_path)
    store.prepare()
    writer = store.new_writer(bitrot.XXH3_128, 100)
    with pytest.raises(InvalidArgument):
        writer.write_block(b"y" * 100, bytes(16))
    writer.abort()
    assert os.listdir(store.tmp) == []


def test_group_commit_isolates_failing_jobs(tmp_path: Path) -> None:
    meta = MetaStore(tmp_path / "m.db")
    meta.open()
    try:
        meta.write(lambda c: c.execute("INSERT INTO buckets VALUES ('b', 1)"))
        results: dict[int, object] = {}

        def job(i: int) -> None:
            def fn(c: sqlite3.Connection) -> int:
                c.execute("INSERT INTO bucket_config VALUES ('b', ?, x'00')", (f"n{i}",))
                if i % 7 == 0:
                    raise NoSuchBucket("refused")  # rolled back alone
                if i % 11 == 0:
                    c.execute("INSERT INTO nowhere VALUES (1)")  # a failing statement
                return i
            try:
                results[i] = meta.write(fn)
            except Exception as exc:
                results[i] = type(exc)

        threads = [threading.Thread(target=job, args=(i,)) for i in range(1, 60)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stored = meta.read(lambda c: {r[0] for r in c.execute("SELECT name FROM bucket_config")})
        for i, outcome in results.items():
            if i % 7 == 0:
                assert outcome is NoSuchBucket and f"n{i}" not in stored
            elif i % 11 == 0:
                assert outcome is sqlite3.OperationalError and f"n{i}" not in stored
            else:
                assert outcome == i and f"n{i}" in stored
    finally:
        meta.close()


def _staged_write(svc: StorageService, key: str, data: bytes) -> str:
    data_id = str(uuid.uuid4())
    header = pb.ShardHeader(bucket="unit", key=key, data_id=data_id, part_number=1,
                            geometry=GEOMETRY)
    messages = [pb.WriteShardMessage(header=header)]
    messages += [pb.WriteShardMessage(block=b) for b in blocks_of(data)]
    svc.WriteShard(iter(messages))
    return data_id


def test_failed_commit_puts_the_write_back(service: StorageService,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    data = os.urandom(40_000)
    data_id = _staged_write(service, "k", data)
    request = pb.CommitObjectRequest(bucket="unit", key="k", version_id=uuid7(),
                                     geometry=GEOMETRY)
    request.parts.add(part_number=1, data_id=data_id, shard_size=len(data))
    real_write = service.meta.write

    def disk_full(fn):
        raise sqlite3.OperationalError("database or disk is full")

    monkeypatch.setattr(service.meta, "write", disk_full)
    with pytest.raises(sqlite3.OperationalError):
        service.CommitObject(request)
    assert len(os.listdir(service.shards.tmp)) == 1  # back in tmp/, still committable
    assert not any(service.shards.shards.rglob("*/*"))
    monkeypatch.setattr(service.meta, "write", real_write)
    assert service.CommitObject(request).is_latest
    blocks = service.ReadShard(pb.ReadShardRequest(bucket="unit", key="k"))
    assert b"".join(b.data for b in blocks) == data
    assert os.listdir(service.shards.tmp) == []


def test_orphan_scan_keeps_referenced_and_promoting_files(service: StorageService) -> None:
    data_id = _staged_write(service, "kept", b"k" * 1000)
    request = pb.CommitObjectRequest(bucket="unit", key="kept", version_id=uuid7(),
                                     geometry=GEOMETRY)
    request.parts.add(part_number=1, data_id=data_id, shard_size=1000)
    service.CommitObject(request)
    orphan, busy = uuid.uuid4().hex, uuid.uuid4().hex
    for name in (orphan, busy):
        service.shards.shard_path(name).write_bytes(b"left by a crash")
    service.shards._promoting.add(busy)  # a commit in flight
    collector = Collector(service.config, service.meta, service.shards, service.writes)
    assert collector.sweep_orphans() == 1
    assert not service.shards.shard_path(orphan).exists()
    assert service.shards.shard_path(busy).exists()
    blocks = service.ReadShard(pb.ReadShardRequest(bucket="unit", key="kept"))
    assert b"".join(b.data for b in blocks) == b"k" * 1000


def test_error_translation() -> None:
    assert isinstance(translate(OSError(errno.ENOSPC, "full")), DiskFull)
    assert isinstance(translate(sqlite3.OperationalError("database or disk is full")), DiskFull)
    assert isinstance(translate(OSError(errno.EIO, "io")), DiskIOError)
    assert translate(KeyError("x")).reason == "Internal"


@pytest.mark.parametrize("argv", [
    ["--data", "d", "--listen", "x", "--node-id", "n", "--insecure"],
    ["--data", "d", "--listen", "127.0.0.1:80", "--node-id", "bad id", "--insecure"],
    ["--data", "d", "--listen", "127.0.0.1:80", "--node-id", "n", "--insecure",
     "--tls-cert", "c"],
])
def test_config_refusals(argv: list[str]) -> None:
    with pytest.raises(ConfigError):
        parse_args(argv)


def test_stale_writes_and_leaked_tmp_files_are_swept(service: StorageService) -> None:
    _staged_write(service, "stale", b"s" * 1000)
    leaked = service.shards.tmp_path(uuid.uuid4().hex)
    leaked.write_bytes(b"from a stream nobody finished")
    os.utime(leaked, (0, 0))  # older than any grace period
    collector = Collector(service.config, service.meta, service.shards, service.writes)
    assert collector.sweep_stale_writes() == (0, 1)  # the fresh staged write stays
    assert len(os.listdir(service.shards.tmp)) == 1
    for write in service.writes._staged.values():
        write.staged_at -= service.config.tmp_grace + 1
    assert collector.sweep_stale_writes() == (1, 0)
    assert os.listdir(service.shards.tmp) == []
    assert service.writes.count() == 0
