"""Shard write/commit/read against a real node over gRPC with mTLS: round trips, ranges,
bitrot detection, and refusals that keep nothing."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster.launcher import Cluster
from common import bitrot
from proto import storage_pb2 as pb
from tests.nodeclient import GEOMETRY, NodeClient, blocks_of, geometry, one_node, reason, uuid7

SBS = GEOMETRY.shard_block_size  # 16 KiB


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, NodeClient]]:
    with one_node(tmp_path_factory.mktemp("node"), bucket="shards") as node:
        yield node


def _data_dir(cluster: Cluster) -> Path:
    return Path(cluster.record("node-1").data_dir)


def _tmp_files(cluster: Cluster) -> list[str]:
    return os.listdir(_data_dir(cluster) / "tmp")


@pytest.mark.parametrize("hash_algorithm", [bitrot.XXH3_128, bitrot.SHA256])
def test_round_trip_random_sizes(node: tuple[Cluster, NodeClient], hash_algorithm: int) -> None:
    _, client = node
    g = geometry(hash_algorithm=hash_algorithm)
    rng = random.Random(hash_algorithm)
    sizes = [0, 1, SBS - 1, SBS, SBS + 1, 3 * SBS + 17] + [rng.randrange(1, 8 * SBS)
                                                            for _ in range(4)]
    for size in sizes:
        data = os.urandom(size)
        for inline in (False, True):
            key = f"rt/{hash_algorithm}/{size}/{inline}"
            version_id, is_latest = client.put("shards", key, data, g, inline=inline)
            assert is_latest
            assert client.read("shards", key) == data
            assert client.read("shards", key, version_id=version_id) == data
            (meta,) = client.read_meta("shards", key, include_inline=True)
            assert meta.version_id == version_id and meta.is_inline == inline
            assert meta.geometry.hash == hash_algorithm
            if inline:
                assert meta.inline_shard == data
            else:
                assert [(p.part_number, p.shard_size) for p in meta.parts] == [(1, size)]


def test_range_of_blocks(node: tuple[Cluster, NodeClient]) -> None:
    _, client = node
    data = os.urandom(5 * SBS + 100)  # 6 blocks, the last one short
    client.put("shards", "range", data)
    for start, count in [(0, 1), (2, 2), (4, 0), (5, 1), (5, 9), (6, 0), (1, 0)]:
        got = client.read_blocks("shards", "range", start=start, count=count)
        want = data[start * SBS:(start + count) * SBS if count else None]
        assert b"".join(b.data for b in got) == want
        for b in got:  # every block arrives with its hash
            assert b.hash == bitrot.block_hash(bitrot.XXH3_128, b.data)
    with pytest.raises(grpc.RpcError) as err:
        client.read("shards", "range", start=7)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def _shard_file(cluster: Cluster, client: NodeClient, key: str) -> Path:
    (version,) = client.inspect("shards", key).versions
    (shard,) = version.shards
    return _data_dir(cluster) / shard.file


def test_corrupt_block_is_data_loss_and_no_bad_bytes(node: tuple[Cluster, NodeClient]) -> None:
    cluster, client = node
    data = os.urandom(4 * SBS)
    client.put("shards", "rot", data)
    path = _shard_file(cluster, client, "rot")
    stride = 16 + SBS
    with open(path, "r+b") as f:  # flip one byte inside block 2's data
        f.seek(2 * stride + 16 + 1234)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))

    received: list[pb.ShardBlock] = []
    stream = client.stub.ReadShard(pb.ReadShardRequest(bucket="shards", key="rot"), timeout=10)
    with pytest.raises(grpc.RpcError) as err:
        for block in stream:
            received.append(block)
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert reason(err.value) == "Corrupt"
    assert b"".join(b.data for b in received) == data[:2 * SBS]  # good blocks only
    assert client.read("shards", "rot", start=3) == data[3 * SBS:]  # past the bad one: fine

    report = client.stub.VerifyShard(pb.VerifyShardRequest(bucket="shards", key="rot"),
                                     timeout=10)
    assert not report.ok
    assert [(b.part_number, b.block) for b in report.bad_blocks] == [(1, 2)]

    hashes = client.inspect("shards", "rot", with_hashes=True).versions[0].shards[0]
    assert list(hashes.block_hashes) == [b.hash for b in blocks_of(data)]


def test_batched_blocks_both_ways(node: tuple[Cluster, NodeClient]) -> None:
    """ShardBlocks messages (several blocks each) write and read the same shard file as
    single blocks do; a corrupt block ends a batched read after the good blocks before it."""
    cluster, client = node
    g = geometry(block_size=4 * 256 * 1024)  # 256 KiB shard blocks: 4 to a 1 MiB message
    data = os.urandom(9 * g.shard_block_size + 5)
    blocks = blocks_of(data, g)
    header = pb.ShardHeader(bucket="shards", key="batched", data_id=str(uuid.uuid4()),
                            part_number=1, shard_index=0, geometry=g)
    messages = [pb.WriteShardMessage(header=header),
                pb.WriteShardMessage(blocks=pb.ShardBlocks(blocks=blocks[:3])),
                pb.WriteShardMessage(block=blocks[3]),
                pb.WriteShardMessage(blocks=pb.ShardBlocks(blocks=blocks[4:]))]
    reply = client.stub.WriteShard(iter(messages), timeout=10)
    assert (reply.blocks, reply.bytes) == (10, len(data))
    client.stub.CommitObject(pb.CommitObjectRequest(
        bucket="shards", key="batched", version_id=uuid7(), shard_index=0, geometry=g,
        parts=[pb.PartRef(part_number=1, data_id=header.data_id, shard_size=len(data))]),
        timeout=10)

    def batched(start: int = 0, count: int = 0) -> list[pb.ShardBlocks]:
        return list(client.stub.ReadShardBlocks(pb.ReadShardRequest(
            bucket="shards", key="batched", start_block=start, block_count=count), timeout=10))

    runs = batched()
    assert [len(r.blocks) for r in runs] == [4, 4, 2]  # about 1 MiB of shard data each
    assert [b for r in runs for b in r.blocks] == client.read_blocks("shards", "batched")
    assert b"".join(b.data for r in batched(3, 5) for b in r.blocks) == \
        data[3 * g.shard_block_size:8 * g.shard_block_size]

    stride = 16 + g.shard_block_size
    with open(_shard_file(cluster, client, "batched"), "r+b") as f:  # rot inside block 6
        f.seek(6 * stride + 16 + 99)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    received: list[pb.ShardBlock] = []
    with pytest.raises(grpc.RpcError) as err:
        for run in client.stub.ReadShardBlocks(pb.ReadShardRequest(
                bucket="shards", key="batched"), timeout=10):
            received += run.blocks
    assert err.value.code() == grpc.StatusCode.DATA_LOSS and reason(err.value) == "Corrupt"
    assert received == blocks[:6]


def test_write_stream_ending_with_its_commit(node: tuple[Cluster, NodeClient]) -> None:
    """A WriteShard stream whose last message is the commit: one round trip, committed only
    once the shard is durable; a commit that does not fit the write commits nothing."""
    _, client = node
    data = os.urandom(3 * SBS + 11)

    def stream(key: str, commit: pb.CommitObjectRequest, *, data_id: str = "",
               after: tuple[pb.WriteShardMessage, ...] = ()) -> pb.WriteShardReply:
        header = pb.ShardHeader(bucket="shards", key=key,
                                data_id=data_id or commit.parts[0].data_id, part_number=1,
                                shard_index=0, geometry=GEOMETRY)
        messages = [pb.WriteShardMessage(header=header),
                    pb.WriteShardMessage(blocks=pb.ShardBlocks(blocks=blocks_of(data))),
                    pb.WriteShardMessage(commit=commit), *after]
        return client.stub.WriteShard(iter(messages), timeout=10)

    def commit_of(key: str, data_id: str, size: int = len(data)) -> pb.CommitObjectRequest:
        return pb.CommitObjectRequest(
            bucket="shards", key=key, version_id=uuid7(), shard_index=0, geometry=GEOMETRY,
            parts=[pb.PartRef(part_number=1, data_id=data_id, shard_size=size)])

    commit = commit_of("oneshot", str(uuid.uuid4()))
    reply = stream("oneshot", commit)
    assert (reply.committed, reply.is_latest, reply.bytes) == (True, True, len(data))
    assert client.read("shards", "oneshot") == data
    assert client.read_meta("shards", "oneshot")[0].version_id == commit.version_id

    wrong_size = commit_of("wrong", str(uuid.uuid4()), len(data) - 1)
    with pytest.raises(grpc.RpcError) as err:
        stream("wrong", wrong_size)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as err:
        client.read_meta("shards", "wrong")
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    fixed = commit_of("wrong", wrong_size.parts[0].data_id)  # the write stayed staged
    assert client.stub.CommitObject(fixed, timeout=10).is_latest
    assert client.read("shards", "wrong") == data

    other = commit_of("other", str(uuid.uuid4()))  # names another write than the stream's
    with pytest.raises(grpc.RpcError) as err:
        stream("other", other, data_id=str(uuid.uuid4()))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    late = commit_of("late", str(uuid.uuid4()))
    with pytest.raises(grpc.RpcError) as err:
        stream("late", late, after=(pb.WriteShardMessage(block=blocks_of(b"x")[0]),))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    for key in ("other", "late"):
        with pytest.raises(grpc.RpcError):
            client.read_meta("shards", key)


def test_write_shard_once(node: tuple[Cluster, NodeClient]) -> None:
    """WriteShardOnce: header, blocks and commit in one call, with WriteShard's rules: a
    corrupt block, a missing header or a commit of another write leave nothing behind; a
    commit that does not fit the write leaves the write staged, as a stream's does."""
    cluster, client = node
    data = os.urandom(5 * SBS + 3)

    def request(key: str, *, blocks: list[pb.ShardBlock] | None = None, size: int = len(data),
                commit_data_id: str = "") -> pb.WriteShardOnceRequest:
        data_id = str(uuid.uuid4())
        return pb.WriteShardOnceRequest(
            header=pb.ShardHeader(bucket="shards", key=key, data_id=data_id, part_number=1,
                                  shard_index=0, geometry=GEOMETRY),
            blocks=pb.ShardBlocks(blocks=blocks_of(data) if blocks is None else blocks),
            commit=pb.CommitObjectRequest(
                bucket="shards", key=key, version_id=uuid7(), shard_index=0, geometry=GEOMETRY,
                parts=[pb.PartRef(part_number=1, data_id=commit_data_id or data_id,
                                  shard_size=size)]))

    ok = request("once")
    reply = client.stub.WriteShardOnce(ok, timeout=10)
    assert (reply.committed, reply.is_latest, reply.bytes, reply.blocks) == (True, True,
                                                                             len(data), 6)
    assert client.read("shards", "once") == data
    assert client.read_meta("shards", "once")[0].version_id == ok.commit.version_id

    rotten = blocks_of(data)
    rotten[2] = pb.ShardBlock(data=rotten[2].data, hash=bytes(16))
    no_header = request("bad-none")
    no_header.ClearField("header")
    for key, bad in (("bad-hash", request("bad-hash", blocks=rotten)),
                     ("bad-none", no_header),
                     ("bad-other", request("bad-other", commit_data_id=str(uuid.uuid4())))):
        with pytest.raises(grpc.RpcError) as err:
            client.stub.WriteShardOnce(bad, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT, key
        with pytest.raises(grpc.RpcError) as err:
            client.read_meta("shards", key)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert client.stat().pending_writes == 0 and _tmp_files(cluster) == []

    wrong_size = request("once", size=len(data) - 1)
    with pytest.raises(grpc.RpcError) as err:
        client.stub.WriteShardOnce(wrong_size, timeout=10)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert client.read_meta("shards", "once")[0].version_id == ok.commit.version_id
    assert client.stat().pending_writes == 1  # staged, as after a stream's failed commit
    client.stub.AbortWrite(pb.AbortWriteRequest(data_id=wrong_size.header.data_id), timeout=10)
    assert client.stat().pending_writes == 0 and _tmp_files(cluster) == []


def test_read_meta_with_head_blocks(node: tuple[Cluster, NodeClient]) -> None:
    """ReadMeta(head_bytes) returns whole verified blocks from the start of part 1 of the
    first version; none for inline versions, and none (rather than an error) when the first
    block is corrupt."""
    cluster, client = node
    data = os.urandom(5 * SBS + 7)
    client.put("shards", "head", data)
    client.put("shards", "head-inline", b"tiny", inline=True)

    def head(key: str, head_bytes: int) -> list[pb.ShardBlock]:
        reply = client.stub.ReadMeta(pb.ReadMetaRequest(bucket="shards", key=key,
                                                        head_bytes=head_bytes), timeout=10)
        return list(reply.versions[0].head_blocks)

    assert head("head", 3 * SBS + 5) == blocks_of(data)[:3]
    assert head("head", 1) == blocks_of(data)[:1]  # at least one whole block
    assert head("head", 100 * SBS) == blocks_of(data)
    assert head("head", 0) == [] and head("head-inline", SBS) == []
    with open(_shard_file(cluster, client, "head"), "r+b") as f:  # rot inside block 0
        f.seek(16 + 5)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0xFF]))
    assert head("head", 3 * SBS) == []


def test_truncated_and_missing_files_are_corrupt(node: tuple[Cluster, NodeClient]) -> None:
    cluster, client = node
    data = os.urandom(3 * SBS)
    client.put("shards", "short", data)
    path = _shard_file(cluster, client, "short")
    os.truncate(path, path.stat().st_size - 10)
    with pytest.raises(grpc.RpcError) as err:
        client.read("shards", "short")
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    assert client.read("shards", "short", count=2) == data[:2 * SBS]

    client.put("shards", "gone", data)
    _shard_file(cluster, client, "gone").unlink()
    with pytest.raises(grpc.RpcError) as err:
        client.read("shards", "gone")
    assert err.value.code() == grpc.StatusCode.DATA_LOSS
    report = client.stub.VerifyShard(pb.VerifyShardRequest(bucket="shards", key="gone"),
                                     timeout=10)
    assert not report.ok and list(report.missing_parts) == [1]
    (shard,) = client.inspect("shards", "gone").versions[0].shards
    assert not shard.present


def test_block_with_wrong_hash_is_refused_and_nothing_kept(
        node: tuple[Cluster, NodeClient]) -> None:
    cluster, client = node
    blocks = blocks_of(os.urandom(3 * SBS))
    blocks[1].hash = bytes(16)
    data_id = str(uuid.uuid4())
    with pytest.raises(grpc.RpcError) as err:
        client.write_shard("shards", "badhash", data_id, blocks)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert reason(err.value) == "InvalidArgument"
    assert _tmp_files(cluster) == []
    assert client.stat().pending_writes == 0
    request = pb.CommitObjectRequest(bucket="shards", key="badhash", version_id=uuid7(),
                                     geometry=GEOMETRY)
    request.parts.add(part_number=1, data_id=data_id, shard_size=3 * SBS)
    with pytest.raises(grpc.RpcError) as err:
        client.stub.CommitObject(request, timeout=10)
    assert err.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert reason(err.value) == "WriteNotFound"


@pytest.mark.parametrize("case", ["oversized", "short-then-more", "geometry", "no-header"])
def test_malformed_writes_are_refused(node: tuple[Cluster, NodeClient], case: str) -> None:
    cluster, client = node
    g = GEOMETRY
    blocks = blocks_of(os.urandom(2 * SBS))
    if case == "oversized":
        blocks = blocks_of(os.urandom(2 * SBS), geometry(block_size=128 * 1024))
    elif case == "short-then-more":
        blocks = blocks_of(os.urandom(100)) + blocks
    elif case == "geometry":
        g = pb.Geometry(data_shards=4, parity_shards=2, block_size=65536, shard_block_size=999)
    with pytest.raises(grpc.RpcError) as err:
        if case == "no-header":
            client.stub.WriteShard(iter([pb.WriteShardMessage(block=blocks[0])]), timeout=10)
        else:
            client.write_shard("shards", f"bad-{case}", str(uuid.uuid4()), blocks, g)
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert _tmp_files(cluster) == []


def test_not_found_reasons(node: tuple[Cluster, NodeClient]) -> None:
    _, client = node
    cases = [
        (lambda: client.read("nobucket", "k"), "NoSuchBucket"),
        (lambda: client.read("shards", "never-written"), "NoSuchKey"),
        (lambda: client.read_meta("shards", "never-written"), "NoSuchKey"),
        (lambda: client.read_meta("shards", "rt/1/1/False", version_id=uuid7()),
         "NoSuchVersion"),
        (lambda: client.read("shards", "rt/1/1/False", part_number=2), "NoSuchPart"),
    ]
    for call, want in cases:
        with pytest.raises(grpc.RpcError) as err:
            call()
        assert (err.value.code(), reason(err.value)) == (grpc.StatusCode.NOT_FOUND, want)


def test_buckets(node: tuple[Cluster, NodeClient]) -> None:
    _, client = node
    stub = client.stub
    client.make_bucket("tmp-bucket")
    with pytest.raises(grpc.RpcError) as err:
        client.make_bucket("tmp-bucket")
    assert reason(err.value) == "BucketAlreadyExists"
    with pytest.raises(grpc.RpcError) as err:
        client.make_bucket("Bad_Name")
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    stub.PutBucketConfig(pb.PutBucketConfigRequest(bucket="tmp-bucket", name="encryption",
                                                   value=b"<xml/>"), timeout=10)
    got = stub.GetBucketConfig(pb.GetBucketConfigRequest(bucket="tmp-bucket",
                                                         name="encryption"), timeout=10)
    assert got.found and got.value == b"<xml/>"
    client.put("tmp-bucket", "obj", b"x" * 10)
    with pytest.raises(grpc.RpcError) as err:
        stub.DeleteBucket(pb.DeleteBucketRequest(bucket="tmp-bucket"), timeout=10)
    assert reason(err.value) == "BucketNotEmpty"
    client.delete_marker("tmp-bucket", "obj")
    stub.DeleteBucket(pb.DeleteBucketRequest(bucket="tmp-bucket"), timeout=10)
    names = [b.name for b in stub.ListBuckets(pb.ListBucketsRequest(), timeout=10).buckets]
    assert "tmp-bucket" not in names and "shards" in names
    with pytest.raises(grpc.RpcError) as err:
        stub.HeadBucket(pb.HeadBucketRequest(bucket="tmp-bucket"), timeout=10)
    assert reason(err.value) == "NoSuchBucket"


def test_cancelled_write_leaves_nothing(node: tuple[Cluster, NodeClient]) -> None:
    cluster, client = node
    release = threading.Event()
    header = pb.ShardHeader(bucket="shards", key="cancelled", data_id=str(uuid.uuid4()),
                            part_number=1, shard_index=0, geometry=GEOMETRY)

    def messages() -> Iterator[pb.WriteShardMessage]:
        yield pb.WriteShardMessage(header=header)
        for b in blocks_of(os.urandom(2 * SBS)):
            yield pb.WriteShardMessage(block=b)
        release.wait(10)

    call = client.stub.WriteShard.future(messages(), timeout=30)
    deadline = time.monotonic() + 10
    while not _tmp_files(cluster) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _tmp_files(cluster)
    call.cancel()
    release.set()
    while (_tmp_files(cluster) or client.stat().pending_writes) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert _tmp_files(cluster) == []
    assert client.stat().pending_writes == 0
    log = Path(cluster.record("node-1").log).read_text()
    assert "Traceback" not in log and "Exception calling application" not in log
