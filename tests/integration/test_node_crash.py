"""`kill -9` of a real node mid-write and mid-commit: the previous state stays intact and
readable, acknowledged commits survive, and leftover temporary data is swept at restart."""

from __future__ import annotations

import os
import random
import threading
import time
import uuid
from pathlib import Path

import grpc
import pytest

from cluster.launcher import Cluster
from proto import storage_pb2 as pb
from tests.nodeclient import GEOMETRY, NodeClient, blocks_of, one_node, uuid7

SBS = GEOMETRY.shard_block_size


def _dir(cluster: Cluster, sub: str) -> Path:
    return Path(cluster.record("node-1").data_dir) / sub


def _wait_for(condition, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_kill_during_write_keeps_old_version(tmp_path: Path) -> None:
    with one_node(tmp_path, bucket="crash") as (cluster, client):
        old = os.urandom(5 * SBS + 7)
        old_id, _ = client.put("crash", "key", old)
        # the node writes shard data in 1 MiB steps (node/direct_io.py): send more than that
        blocks = blocks_of(os.urandom(80 * SBS))
        release = threading.Event()
        header = pb.ShardHeader(bucket="crash", key="key", data_id=str(uuid.uuid4()),
                                part_number=1, shard_index=0, geometry=GEOMETRY)

        def messages():
            yield pb.WriteShardMessage(header=header)
            for b in blocks[:70]:
                yield pb.WriteShardMessage(block=b)
            release.wait(20)  # the stream stays open, half written, until the node dies

        call = client.stub.WriteShard.future(messages(), timeout=30)
        tmp = _dir(cluster, "tmp")
        assert _wait_for(lambda: any(p.stat().st_size >= 1 << 20 for p in tmp.iterdir()))
        cluster.kill("node-1")
        release.set()
        with pytest.raises(grpc.RpcError):
            call.result()
        assert os.listdir(tmp)  # the half-written shard is still on disk ...
        cluster.start("node-1")
        assert os.listdir(tmp) == []  # ... and swept at start
        with NodeClient.for_node(cluster) as fresh:
            (meta,) = fresh.read_meta("crash", "key")
            assert meta.version_id == old_id
            assert fresh.read("crash", "key") == old
            assert fresh.stat().pending_writes == 0


def _writer(client: NodeClient, stop: threading.Event, written: dict, acked: dict,
            rng: random.Random) -> None:
    """Write and commit until the node dies; record every attempt and every acknowledgement."""
    while not stop.is_set():
        key = f"k{rng.randrange(12)}"
        data = os.urandom(rng.choice([0, 100, SBS - 1, 2 * SBS + 5, 6 * SBS]))
        version_id = uuid7()
        written[version_id] = data
        how = rng.random()
        try:
            if how < 0.35 and data:  # the gateway's one-block write: shard and commit at once
                client.put_once("crash", key, data, version_id=version_id)
            else:
                client.put("crash", key, data, version_id=version_id, inline=how < 0.55)
        except grpc.RpcError:
            return
        acked.setdefault(key, []).append(version_id)


def test_kill_storm_loses_no_acknowledged_commit(tmp_path: Path) -> None:
    rng = random.Random(42)
    written: dict[str, bytes] = {}
    acked: dict[str, list[str]] = {}
    with one_node(tmp_path, bucket="crash") as (cluster, _):
        for _round in range(3):
            with NodeClient.for_node(cluster) as writer_client:
                stop = threading.Event()
                threads = [threading.Thread(target=_writer, args=(
                    writer_client, stop, written, acked, random.Random(rng.random())))
                    for _ in range(4)]
                for t in threads:
                    t.start()
                time.sleep(rng.uniform(0.3, 0.8))
                cluster.kill("node-1")  # SIGKILL wherever the writes are
                stop.set()
                for t in threads:
                    t.join(30)
            cluster.start("node-1")
            assert os.listdir(_dir(cluster, "tmp")) == []
            with NodeClient.for_node(cluster) as reader:
                _check_state(reader, written, acked)
                _check_no_orphans(cluster, reader, list(acked))
    assert sum(len(v) for v in acked.values()) > 20  # the storm did write


def _check_state(client: NodeClient, written: dict[str, bytes],
                 acked: dict[str, list[str]]) -> None:
    for key, versions in acked.items():
        (latest,) = client.read_meta("crash", key)
        assert latest.version_id >= max(versions)  # no acknowledged commit was lost
        assert client.read("crash", key) == written[latest.version_id]
        for record in client.inspect("crash", key).versions:
            report = client.stub.VerifyShard(pb.VerifyShardRequest(
                bucket="crash", key=key, version_id=record.version.version_id), timeout=10)
            assert report.ok, (key, record.version.version_id, report)


def _check_no_orphans(cluster: Cluster, client: NodeClient, keys: list[str]) -> None:
    referenced = {s.file.rsplit("/", 1)[1] for key in keys
                  for r in client.inspect("crash", key).versions for s in r.shards}
    shards = _dir(cluster, "shards")

    def on_disk() -> set[str]:
        return {p.name for p in shards.rglob("*") if p.is_file()}

    # files a commit renamed in before the kill but never recorded go with the orphan scan
    assert _wait_for(lambda: on_disk() == referenced), on_disk() - referenced
