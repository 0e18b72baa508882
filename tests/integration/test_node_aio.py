"""The alternative asyncio server (`--server aio`, kept for bench/node.py) still serves the
same contract: round trips, streams, error reasons, health."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import grpc
import pytest

from proto import storage_pb2 as pb
from tests.nodeclient import GEOMETRY, NodeClient, blocks_of, one_node, reason, uuid7


def test_aio_server_round_trip(tmp_path: Path) -> None:
    with one_node(tmp_path, {"TESSERA_NODE_SERVER": "aio"}, bucket="aio") as (cluster, client):
        assert "aio server" in Path(cluster.record("node-1").log).read_text()
        data = os.urandom(5 * GEOMETRY.shard_block_size + 3)
        client.put("aio", "file", data)
        client.put("aio", "inline", b"small", inline=True)
        assert client.read("aio", "file") == data
        assert client.read("aio", "file", start=2, count=2) == data[
            2 * GEOMETRY.shard_block_size:4 * GEOMETRY.shard_block_size]
        assert client.read_meta("aio", "inline", include_inline=True)[0].inline_shard == b"small"
        assert client.list_objects("aio") == ["file", "inline"]
        with pytest.raises(grpc.RpcError) as err:
            client.read("aio", "missing")
        assert reason(err.value) == "NoSuchKey"
        bad = blocks_of(os.urandom(100))
        bad[0].hash = bytes(16)
        with pytest.raises(grpc.RpcError) as err:
            client.write_shard("aio", "bad", "d-1", bad)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert os.listdir(Path(cluster.record("node-1").data_dir) / "tmp") == []
        one_shot(client)
        once = os.urandom(2 * GEOMETRY.shard_block_size + 9)
        client.put_once("aio", "once", once)  # WriteShardOnce: shard and commit in one call
        assert client.read("aio", "once") == once
        with NodeClient.for_node(cluster) as again:
            assert again.stat().objects == 4


def one_shot(client: NodeClient) -> None:
    """Batched blocks and the commit in one WriteShard stream; ReadShardBlocks reads them."""
    data = os.urandom(3 * GEOMETRY.shard_block_size + 1)
    data_id = str(uuid.uuid4())
    header = pb.ShardHeader(bucket="aio", key="oneshot", data_id=data_id, part_number=1,
                            geometry=GEOMETRY)
    commit = pb.CommitObjectRequest(
        bucket="aio", key="oneshot", version_id=uuid7(), geometry=GEOMETRY,
        parts=[pb.PartRef(part_number=1, data_id=data_id, shard_size=len(data))])
    reply = client.stub.WriteShard(iter([
        pb.WriteShardMessage(header=header),
        pb.WriteShardMessage(blocks=pb.ShardBlocks(blocks=blocks_of(data))),
        pb.WriteShardMessage(commit=commit)]), timeout=10)
    assert reply.committed and reply.is_latest
    runs = client.stub.ReadShardBlocks(pb.ReadShardRequest(bucket="aio", key="oneshot"),
                                       timeout=10)
    assert b"".join(b.data for run in runs for b in run.blocks) == data
