"""The alternative asyncio server (`--server aio`, kept for bench/node.py) still serves the
same contract: round trips, streams, error reasons, health."""

from __future__ import annotations

import os
from pathlib import Path

import grpc
import pytest

from tests.nodeclient import GEOMETRY, NodeClient, blocks_of, one_node, reason


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
        with NodeClient.for_node(cluster) as again:
            assert again.stat().objects == 2
