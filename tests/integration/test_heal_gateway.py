"""A real gateway's heal queue: writes that miss a node are queued in `<state-dir>/heal.db`,
kept across a gateway restart, and healed by the restarted gateway once the node is back."""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.launcher import Cluster
from cluster.processes import stop as stop_process
from tests.conftest import running_cluster
from tests.integration.sse_helpers import endpoint
from tests.nodeclient import NodeClient

GATEWAY_ENV = {
    "TESSERA_HEAL_SETTLE": "0.2",
    "TESSERA_HEAL_DEFER_MAX": "1",  # retry soon once the node is back
    "TESSERA_HEAL_COMMIT_WINDOW": "0",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("heal-gateway"), nodes=6, gateways=1, kes=0,
                         parity=2, gateway_env=GATEWAY_ENV) as c:
        yield c


def s3(cluster: Cluster):
    return endpoint(cluster).client(retries={"max_attempts": 1})


def queued(cluster: Cluster) -> dict[str, float]:
    """key -> queued_at of the waiting rows in gateway-1's heal.db (read-only)."""
    path = Path(cluster.record("gateway-1").data_dir) / "heal.db"
    if not path.exists():
        return {}
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5) as conn:
        return dict(conn.execute("SELECT key, queued_at FROM heal_queue WHERE dead = 0"))


def wait_for(condition, seconds: float, what: str):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_queue_survives_a_gateway_restart_and_heals_the_node(cluster: Cluster):
    client = s3(cluster)
    client.create_bucket(Bucket="durable")
    down = "node-2"
    objects = {f"k{i}": os.urandom(size) for i, size in enumerate([10, 3000, 600_000,
                                                                     1_100_000])}
    cluster.kill(down)
    try:
        for key, data in objects.items():
            client.put_object(Bucket="durable", Key=key, Body=data)
        def all_queued() -> dict[str, float] | None:
            rows = queued(cluster)
            return rows if set(rows) == set(objects) else None
        rows = wait_for(all_queued, 20, "the missed writes in heal.db")
        stop_process(cluster.record("gateway-1"))  # SIGTERM: a clean shutdown
        assert queued(cluster) == rows  # on disk while no gateway runs
        cluster.start("gateway-1")
        assert queued(cluster) == rows
    finally:
        if cluster.state_of(down) == "down":
            cluster.start(down)
    wait_for(lambda: not queued(cluster), 60, "the restarted gateway to drain its queue")
    with NodeClient.for_node(cluster, down) as healed, \
            NodeClient.for_node(cluster, "node-1") as other:
        from proto import storage_pb2 as pb

        for key in objects:
            mine = next(v for v in healed.inspect("durable", key).versions if v.is_latest)
            theirs = next(v for v in other.inspect("durable", key).versions if v.is_latest)
            assert mine.version.version_id == theirs.version.version_id, key
            verify = healed.stub.VerifyShard(pb.VerifyShardRequest(bucket="durable", key=key),
                                             timeout=20)
            assert verify.ok, key
    for name in ("node-5", "node-6"):  # node-2's shards are needed now
        cluster.kill(name)
    try:
        for key, data in objects.items():
            assert client.get_object(Bucket="durable", Key=key)["Body"].read() == data, key
    finally:
        for name in ("node-5", "node-6"):
            cluster.start(name)
