"""A real ENOSPC: the node's data directory on a size-limited tmpfs (mounted as root).

Disk full must answer RESOURCE_EXHAUSTED / DiskFull, keep nothing partial, and leave the node
healthy with its old data readable, whether the shard write or the metadata commit hits it.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster.launcher import Cluster
from proto import storage_pb2 as pb
from tests.nodeclient import GEOMETRY, NodeClient, blocks_of, one_node, reason, uuid7

DISK = 8 * 1024 * 1024


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A cluster root whose node-1 data directory is an 8 MiB tmpfs."""
    data = tmp_path / "node-1" / "data"
    data.mkdir(parents=True)
    if os.geteuid() != 0:
        pytest.skip("mounting a size-limited tmpfs needs root")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={DISK}", "tmpfs", str(data)],
                             capture_output=True, check=False, timeout=30)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        yield tmp_path
    finally:
        subprocess.run(["umount", "-l", str(data)], check=False, timeout=30)


def _assert_disk_full(err: pytest.ExceptionInfo[grpc.RpcError]) -> None:
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, err.value
    assert reason(err.value) == "DiskFull"


def _assert_healthy(cluster: Cluster, client: NodeClient, kept: bytes) -> None:
    assert cluster.probe(cluster.record("node-1")).ok
    assert client.read("full", "kept") == kept
    assert client.read_meta("full", "small", include_inline=True)[0].inline_shard == b"s" * 100
    assert os.listdir(Path(cluster.record("node-1").data_dir) / "tmp") == []


def test_disk_full_refuses_cleanly(small_disk: Path) -> None:
    with one_node(small_disk, bucket="full") as (cluster, client):
        kept = os.urandom(1024 * 1024)
        client.put("full", "kept", kept)
        client.put("full", "small", b"s" * 100, inline=True)

        # 1. a shard bigger than the disk: the write fails midway, nothing stays behind
        with pytest.raises(grpc.RpcError) as err:
            client.write_shard("full", "huge", str(uuid.uuid4()),
                               blocks_of(os.urandom(2 * DISK)))
        _assert_disk_full(err)
        assert client.stat().pending_writes == 0
        _assert_healthy(cluster, client, kept)
        # ... and the same in one WriteShardOnce call with its commit: nothing committed
        with pytest.raises(grpc.RpcError) as err:
            client.put_once("full", "kept", os.urandom(2 * DISK))
        _assert_disk_full(err)
        assert client.stat().pending_writes == 0
        _assert_healthy(cluster, client, kept)

        # 2. fill the disk with a staged write, then a commit whose metadata cannot fit
        free = client.stat().disk_free
        filler = str(uuid.uuid4())
        client.write_shard("full", "filler", filler, blocks_of(os.urandom(free - 64 * 1024)))
        request = pb.CommitObjectRequest(bucket="full", key="small", version_id=uuid7(),
                                         geometry=GEOMETRY, inline_shard=os.urandom(1 << 20))
        with pytest.raises(grpc.RpcError) as err:
            client.stub.CommitObject(request, timeout=20)
        _assert_disk_full(err)
        (latest,) = client.read_meta("full", "small")  # the old version is still the latest
        assert latest.version_id != request.version_id

        # 3. space freed: the same commit now succeeds
        client.stub.AbortWrite(pb.AbortWriteRequest(data_id=filler), timeout=20)
        assert client.stub.CommitObject(request, timeout=20).is_latest
        assert client.read("full", "small") == request.inline_shard
        assert client.read("full", "kept") == kept
