"""Versions on a real node: latest = highest id, rollbacks, delete markers, collection."""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest

from cluster.launcher import Cluster
from proto import storage_pb2 as pb
from tests.nodeclient import NodeClient, one_node, reason, uuid7


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, NodeClient]]:
    # short grace periods so the collector can be watched; a test that needs a version to
    # survive acts well within 3 s
    env = {"TESSERA_NODE_VERSION_GRACE": "3", "TESSERA_NODE_MARKER_GRACE": "3",
           "TESSERA_NODE_GC_INTERVAL": "0.2"}
    with one_node(tmp_path_factory.mktemp("node"), env, bucket="ver") as node:
        yield node


def _versions(client: NodeClient, key: str) -> list[tuple[str, bool]]:
    return [(r.version.version_id, r.is_latest) for r in client.inspect("ver", key).versions]


def test_concurrent_commits_leave_one_latest_the_highest(
        node: tuple[Cluster, NodeClient]) -> None:
    _, client = node
    ids = sorted(uuid7() for _ in range(24))
    shuffled = random.sample(ids, len(ids))
    payload = {vid: os.urandom(random.randrange(0, 40_000)) for vid in ids}

    def put(vid: str) -> bool:
        return client.put("ver", "hot", payload[vid], version_id=vid,
                          inline=len(payload[vid]) < 20_000)[1]

    with ThreadPoolExecutor(8) as pool:
        latest_flags = dict(zip(shuffled, pool.map(put, shuffled), strict=True))
    assert latest_flags[ids[-1]] is True  # the highest id was the latest when committed
    held = _versions(client, "hot")
    assert [vid for vid, _ in held] == ids[::-1]  # every version, newest first
    assert [vid for vid, latest in held if latest] == [ids[-1]]  # exactly one latest
    (meta,) = client.read_meta("ver", "hot")
    assert meta.version_id == ids[-1]
    assert client.read("ver", "hot") == payload[ids[-1]]


def test_late_lower_commit_is_not_latest(node: tuple[Cluster, NodeClient]) -> None:
    _, client = node
    old, new = sorted([uuid7(), uuid7()])
    assert client.put("ver", "late", b"new", version_id=new, inline=True) == (new, True)
    assert client.put("ver", "late", b"old", version_id=old, inline=True) == (old, False)
    assert client.read("ver", "late") == b"new"


def test_delete_version_restores_previous(node: tuple[Cluster, NodeClient]) -> None:
    cluster, client = node
    v1, _ = client.put("ver", "rollback", b"one" * 10_000)
    v2, _ = client.put("ver", "rollback", b"two" * 10_000)
    metas = client.read_meta("ver", "rollback", max_versions=5)
    assert [m.version_id for m in metas] == [v2, v1]
    shard_files = [Path(cluster.record("node-1").data_dir) / r.shards[0].file
                   for r in client.inspect("ver", "rollback").versions]
    client.stub.DeleteVersion(pb.DeleteVersionRequest(bucket="ver", key="rollback",
                                                      version_id=v2), timeout=10)
    assert client.read("ver", "rollback") == b"one" * 10_000
    assert _versions(client, "rollback") == [(v1, True)]
    assert not shard_files[0].exists() and shard_files[1].exists()
    with pytest.raises(grpc.RpcError) as err:
        client.stub.DeleteVersion(pb.DeleteVersionRequest(bucket="ver", key="rollback",
                                                          version_id=v2), timeout=10)
    assert reason(err.value) == "NoSuchVersion"


def test_delete_marker_and_update_meta(node: tuple[Cluster, NodeClient]) -> None:
    _, client = node
    v1, _ = client.put("ver", "marked", b"data", inline=True, meta=b"m1")
    client.stub.UpdateMeta(pb.UpdateMetaRequest(bucket="ver", key="marked", version_id=v1,
                                                meta=b"m2"), timeout=10)
    assert client.read_meta("ver", "marked")[0].meta == b"m2"
    marker = client.delete_marker("ver", "marked")
    metas = client.read_meta("ver", "marked", max_versions=2)
    assert [(m.version_id, m.delete_marker) for m in metas] == [(marker, True), (v1, False)]
    with pytest.raises(grpc.RpcError) as err:
        client.read("ver", "marked")
    assert reason(err.value) == "NoSuchKey"
    assert "marked" not in client.list_objects("ver")
    assert "marked" in client.list_objects("ver", include_delete_markers=True)
    with pytest.raises(grpc.RpcError) as err:
        client.stub.UpdateMeta(pb.UpdateMetaRequest(bucket="ver", key="marked",
                                                    version_id=uuid7(), meta=b"x"), timeout=10)
    assert reason(err.value) == "NoSuchVersion"


def test_retried_commit_is_idempotent(node: tuple[Cluster, NodeClient]) -> None:
    _, client = node
    vid, _ = client.put("ver", "retry", b"r" * 50_000)
    (meta,) = client.read_meta("ver", "retry")
    request = pb.CommitObjectRequest(bucket="ver", key="retry", version_id=vid,
                                     geometry=meta.geometry, parts=meta.parts)
    assert client.stub.CommitObject(request, timeout=10).is_latest
    assert client.read("ver", "retry") == b"r" * 50_000


def test_superseded_versions_and_lone_markers_are_collected(
        node: tuple[Cluster, NodeClient]) -> None:
    cluster, client = node
    v1, _ = client.put("ver", "gc", b"first" * 5000)
    (old_file,) = [Path(cluster.record("node-1").data_dir) / r.shards[0].file
                   for r in client.inspect("ver", "gc").versions]
    v2, _ = client.put("ver", "gc", b"second", inline=True)
    # still there right after (a reader of v1 is not cut off)
    assert [m.version_id for m in client.read_meta("ver", "gc", max_versions=5)] == [v2, v1]
    assert client.read("ver", "gc", version_id=v1) == b"first" * 5000
    client.put("ver", "gone", b"x", inline=True)
    client.delete_marker("ver", "gone")
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if (len(_versions(client, "gc")) == 1 and not old_file.exists()
                and _versions(client, "gone") == []):
            break
        time.sleep(0.2)
    assert _versions(client, "gc") == [(v2, True)]
    assert not old_file.exists()
    assert _versions(client, "gone") == []  # the marker went once nothing was under it
