"""The parity upgrade on a real cluster (6 nodes, EC 4+2, one gateway, one KES server): objects
written through boto3 while a node is down get parity 3, so they read back bit-exact with two
*more* nodes down; after a restart and a heal the once-missing node holds its shard.

One cluster, one scenario: a plain single PUT, an SSE-S3 PUT and a multipart upload all
written during the same outage, so the test pays for one round of kills and restarts.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.launcher import Cluster
from tests.chaos.support import gateway_metrics, restore, wait_until
from tests.conftest import running_cluster
from tests.integration.sse_helpers import endpoint
from tests.nodeclient import NodeClient

ROOT = Path(__file__).resolve().parents[2]
BUCKET = "upgraded"
MIB = 1024 * 1024
UPGRADED = "tessera_parity_upgraded_writes_total"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("parity"), nodes=6, gateways=1, kes=1,
                         parity=2) as c:
        yield c


def _gateway(cluster: Cluster) -> str:
    return cluster.by_role("gateway")[0].address


def _wait_sidelined(cluster: Cluster, node: str) -> None:
    """The gateway learns a node is down from a failed call; its cluster health check (a Stat
    per node, as a load balancer's probe would do) is one: no test-only hook."""
    url = f"http://{_gateway(cluster)}/minio/health/cluster"

    def sidelined() -> bool:
        # a 503 while a set is short, or a refused connection: ask again
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=10).close()
        return gateway_metrics(cluster, _gateway(cluster)).get(
            f"tessera_node_sidelined{{node={node}}}") == 1
    assert wait_until(sidelined, 30, 0.3) is not None, f"the gateway never sidelined {node}"


def _latest_geometry(cluster: Cluster, node: str, key: str) -> tuple[int, int] | None:
    """(k, m) of the latest version as the node itself stores it (None: it has none)."""
    with NodeClient.for_node(cluster, node) as client:
        latest = [r for r in client.inspect(BUCKET, key).versions if r.is_latest]
    if not latest:
        return None
    geometry = latest[0].version.geometry
    return geometry.data_shards, geometry.parity_shards


def _heal(cluster: Cluster) -> str:
    env = {**os.environ, "TESSERA_HEAL_COMMIT_WINDOW": "0"}
    out = subprocess.run([sys.executable, "-m", "cluster", "--root", str(cluster.root), "heal",
                          "--bucket", BUCKET, "-v"], cwd=ROOT, capture_output=True, text=True,
                         timeout=300, check=False, env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def _put_multipart(client, key: str, parts: list[bytes]) -> None:
    upload = client.create_multipart_upload(Bucket=BUCKET, Key=key)["UploadId"]
    done = [{"PartNumber": n, "ETag": client.upload_part(
        Bucket=BUCKET, Key=key, UploadId=upload, PartNumber=n, Body=data)["ETag"]}
        for n, data in enumerate(parts, 1)]
    client.complete_multipart_upload(Bucket=BUCKET, Key=key, UploadId=upload,
                                     MultipartUpload={"Parts": done})


def _read_all(client, objects: dict[str, bytes]) -> None:
    for key, data in objects.items():
        got = client.get_object(Bucket=BUCKET, Key=key)["Body"].read()
        assert hashlib.sha256(got).digest() == hashlib.sha256(data).digest(), key
        # a range across the first erasure-block boundary (1,049,088 bytes)
        start, end = 1_049_000, 1_049_200
        ranged = client.get_object(Bucket=BUCKET, Key=key,
                                   Range=f"bytes={start}-{end}")["Body"].read()
        assert ranged == data[start : end + 1], key


def test_objects_written_with_a_node_down_survive_two_more(cluster: Cluster):
    client = endpoint(cluster).client()
    client.create_bucket(Bucket=BUCKET)
    client.put_object(Bucket=BUCKET, Key="before", Body=b"x" * 3000)
    nodes = cluster.names("node")
    first, later = nodes[0], nodes[2:4]
    objects = {"plain": os.urandom(MIB + 300_000), "sse-s3": os.urandom(MIB + 5000),
               "multipart": os.urandom(5 * MIB) + os.urandom(1234)}
    try:
        cluster.kill(first, signal.SIGKILL)
        _wait_sidelined(cluster, first)
        before = gateway_metrics(cluster, _gateway(cluster)).get(UPGRADED, 0)
        client.put_object(Bucket=BUCKET, Key="plain", Body=objects["plain"])
        client.put_object(Bucket=BUCKET, Key="sse-s3", Body=objects["sse-s3"],
                          ServerSideEncryption="AES256")
        data = objects["multipart"]
        _put_multipart(client, "multipart", [data[: 5 * MIB], data[5 * MIB :]])
        assert gateway_metrics(cluster, _gateway(cluster)).get(UPGRADED) == before + 3
        for key in objects:  # the nodes themselves store 3+3; "before" kept 4+2
            assert _latest_geometry(cluster, nodes[1], key) == (3, 3), key
        assert _latest_geometry(cluster, nodes[1], "before") == (4, 2)

        for name in later:  # three of six down: only parity 3 survives this
            cluster.kill(name, signal.SIGKILL)
        _read_all(client, objects)
        assert client.head_object(Bucket=BUCKET, Key="sse-s3")["ServerSideEncryption"] == \
            "AES256"
    finally:
        restore(cluster)

    _heal(cluster)
    for key in objects:
        assert _latest_geometry(cluster, first, key) == (3, 3), key
    # the healed node's shards are needed now: three others down, `first` among the three up
    try:
        for name in (nodes[1], nodes[4], nodes[5]):
            cluster.kill(name, signal.SIGKILL)
        _read_all(client, objects)
    finally:
        restore(cluster)
