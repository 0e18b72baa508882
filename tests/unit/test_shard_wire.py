"""The hand-made shard codec (common/shard_wire.py) against protobuf's own classes: every
message either side builds must read the same through the generated code, and back."""

from __future__ import annotations

import os

import pytest

from common.shard_wire import (
    WireError,
    decode_blocks,
    decode_write_message,
    decode_write_once,
    encode_blocks,
    encode_write_blocks,
    encode_write_once,
)
from proto import storage_pb2 as pb

SIZES = [[], [0], [1], [127, 128], [262_272], [262_272, 262_272, 262_272, 1000], [300_000] * 4]


def _blocks(sizes: list[int]) -> list[tuple[bytes, bytes]]:
    return [(os.urandom(n), os.urandom(16)) for n in sizes]


@pytest.mark.parametrize("sizes", SIZES)
def test_encoded_blocks_parse_with_protobuf(sizes: list[int]) -> None:
    blocks = _blocks(sizes)
    views = [(memoryview(d), h) for d, h in blocks]  # data shards travel as views
    parsed = pb.ShardBlocks.FromString(encode_blocks(views))
    assert [(b.data, b.hash) for b in parsed.blocks] == blocks
    message = pb.WriteShardMessage.FromString(encode_write_blocks(views))
    assert message.WhichOneof("msg") == "blocks"
    assert [(b.data, b.hash) for b in message.blocks.blocks] == blocks


@pytest.mark.parametrize("sizes", SIZES)
def test_protobuf_messages_decode_to_views(sizes: list[int]) -> None:
    blocks = _blocks(sizes)
    wire = pb.ShardBlocks(blocks=[pb.ShardBlock(data=d, hash=h) for d, h in blocks])
    decoded = decode_blocks(wire.SerializeToString())
    assert [(bytes(d), h) for d, h in decoded] == blocks
    assert all(isinstance(d, memoryview) for d, _ in decoded)
    message = pb.WriteShardMessage(blocks=wire)
    item = decode_write_message(message.SerializeToString())
    assert item.header is None and [(bytes(d), h) for d, h in item.blocks] == blocks


def test_write_messages_of_every_kind() -> None:
    header = pb.ShardHeader(bucket="b", key="k", data_id="d", part_number=1, shard_index=3,
                            geometry=pb.Geometry(data_shards=4, parity_shards=2))
    item = decode_write_message(pb.WriteShardMessage(header=header).SerializeToString())
    assert item.header is not None and not item.blocks
    assert pb.ShardHeader.FromString(bytes(item.header)) == header
    single = pb.WriteShardMessage(block=pb.ShardBlock(data=b"abc", hash=b"h" * 16))
    item = decode_write_message(single.SerializeToString())
    assert item.header is None and [(bytes(d), h) for d, h in item.blocks] == [(b"abc", b"h" * 16)]
    assert decode_write_message(b"").blocks == []
    commit = pb.CommitObjectRequest(bucket="b", key="k", version_id="v", shard_index=2)
    item = decode_write_message(pb.WriteShardMessage(commit=commit).SerializeToString())
    assert item.header is None and not item.blocks and item.commit is not None
    assert pb.CommitObjectRequest.FromString(bytes(item.commit)) == commit


def test_unknown_fields_are_skipped() -> None:
    block = pb.ShardBlock(data=b"data", hash=b"hash").SerializeToString()
    # varint field 9, fixed64 field 10, fixed32 field 11, bytes field 12 around a block
    extra = b"\x48\x96\x01" + b"\x51" + bytes(8) + b"\x5d" + bytes(4) + b"\x62\x02zz"
    wire = extra + b"\x0a" + bytes([len(block) + len(extra)]) + extra + block
    assert [(bytes(d), h) for d, h in decode_blocks(wire)] == [(b"data", b"hash")]


@pytest.mark.parametrize("wire", [b"\x0a\x05abc", b"\x0a", b"\x0a\xff\xff\xff\xff\xff\xff\xff"
                                  b"\xff\xff\xff\xff", b"\x0b", b"\x51abc"])
def test_malformed_bytes_raise(wire: bytes) -> None:
    with pytest.raises(WireError):
        decode_blocks(wire)


@pytest.mark.parametrize("sizes", SIZES)
@pytest.mark.parametrize("with_commit", [True, False])
def test_write_once_both_ways(sizes: list[int], with_commit: bool) -> None:
    """WriteShardOnceRequest: ours parses with protobuf, protobuf's decodes to the stream
    items (header, blocks if any, commit if any) the service takes."""
    blocks = _blocks(sizes)
    header = pb.ShardHeader(bucket="b", key="k", data_id="d", part_number=1, shard_index=3)
    commit = pb.CommitObjectRequest(bucket="b", key="k", version_id="v", shard_index=3)
    ours = encode_write_once(header.SerializeToString(),
                             [(memoryview(d), h) for d, h in blocks],
                             commit.SerializeToString() if with_commit else None)
    parsed = pb.WriteShardOnceRequest.FromString(ours)
    assert parsed.header == header and parsed.HasField("commit") == with_commit
    assert [(b.data, b.hash) for b in parsed.blocks.blocks] == blocks
    wire = pb.WriteShardOnceRequest(
        header=header, blocks=pb.ShardBlocks(blocks=[pb.ShardBlock(data=d, hash=h)
                                                     for d, h in blocks]),
        commit=commit if with_commit else None).SerializeToString()
    for encoded in (ours, wire):
        items = decode_write_once(encoded)
        assert pb.ShardHeader.FromString(bytes(items[0].header)) == header
        got = [(bytes(d), h) for item in items[1:] for d, h in item.blocks]
        assert got == blocks
        commits = [item.commit for item in items if item.commit is not None]
        assert [pb.CommitObjectRequest.FromString(bytes(c)) for c in commits] == (
            [commit] if with_commit else [])


def test_write_once_without_header_has_no_header() -> None:
    items = decode_write_once(pb.WriteShardOnceRequest(
        blocks=pb.ShardBlocks(blocks=[pb.ShardBlock(data=b"x", hash=b"h")])).SerializeToString())
    assert items[0].header is None
