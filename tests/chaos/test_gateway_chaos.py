"""Gateways killed, and shard blocks corrupted on the nodes' disks.

- kill -9 a gateway under load: the other keeps serving (clients fail over, like a load
  balancer would): no request fails;
- kill -9 a gateway in the middle of a large PUT: the previous object (or, once the whole
  body was sent, possibly the new one) is what every reader sees, never a part of one; no
  temporary shard data survives the nodes' sweep, and every node ends up agreeing on the key;
- corrupt random shard blocks on random nodes: every read returns the right bytes, and the
  scanner's deep check repairs the blocks nobody read.

This module has its own cluster (6 nodes, 2 gateways, no KES): nodes sweep uncommitted
writes after 3 s (production: 1 h) and the scanner deep-checks every cycle, every 3 s.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

from cluster.chaos import LoadSpec, load_for
from cluster.healing import corrupt_shard
from cluster.launcher import Cluster
from proto import storage_pb2 as pb
from tests.chaos.support import HEAL_FAST, gateway_metrics, print_report, restore, wait_until
from tests.conftest import running_cluster
from tests.integration.s3_gateway import S3Endpoint, signed_headers
from tests.nodeclient import NodeClient

pytestmark = pytest.mark.chaos

SWEEP = {"TESSERA_NODE_TMP_GRACE": "3", "TESSERA_NODE_GC_INTERVAL": "1"}
DEEP_SCAN = {"TESSERA_SCANNER_DEEP": "1", "TESSERA_SCANNER_DEEP_RATE": "0"}


@pytest.fixture(scope="module")
def gw_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("gw-chaos"), nodes=6, gateways=2, kes=0,
                         parity=2, node_env=SWEEP,
                         gateway_env={**HEAL_FAST, **DEEP_SCAN}) as cluster:
        yield cluster


@pytest.fixture
def cluster(gw_cluster: Cluster) -> Iterator[Cluster]:
    restore(gw_cluster)
    try:
        yield gw_cluster
    finally:
        restore(gw_cluster)


def _client(cluster: Cluster, index: int = 0):
    access, secret = cluster.credentials
    return boto3.session.Session().client(
        "s3", endpoint_url=cluster.gateway_url(index), aws_access_key_id=access,
        aws_secret_access_key=secret, region_name="us-east-1",
        config=Config(retries={"max_attempts": 5, "mode": "standard"},
                      s3={"addressing_style": "path"}))


def test_killing_a_gateway_under_load_fails_no_request(cluster: Cluster) -> None:
    load = load_for(cluster, LoadSpec(operations=300, concurrency=8, bucket="chaos-gw",
                                      keys=90, max_bytes=64 << 20, seed=3))
    load.start()
    assert load.wait_progress(90, timeout=120)
    cluster.kill("gateway-2")
    killed_at = load.done
    report = load.join()
    verify = load.verify_all("verify through gateway-1")
    print_report("kill -9 gateway-2 under load", report,
                 **{"killed after": f"{killed_at} operations"})
    print_report("read back", verify)
    assert report.failures == [] and report.clean
    assert report.failovers > 0  # requests did reach the dead gateway and moved on
    assert verify.failures == [] and verify.clean


def _endpoint(cluster: Cluster, index: int) -> S3Endpoint:
    access, secret = cluster.credentials
    return S3Endpoint(cluster.gateway_url(index), cluster.gateway_url(index, https=True),
                      cluster.ca_path, access, secret)


def _put_and_kill(cluster: Cluster, key: str, body: bytes, sent_fraction: float) -> None:
    """Streams a PUT of `body` to gateway-2, killing it after `sent_fraction` of the body."""
    endpoint = _endpoint(cluster, 1)
    url = f"{endpoint.url}/chaos-crash/{key}"
    headers = signed_headers(endpoint, "PUT", url, payload_hash="UNSIGNED-PAYLOAD",
                             headers={"Content-Length": str(len(body))})
    cut = int(len(body) * sent_fraction)
    import http.client
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        conn.putrequest("PUT", f"/chaos-crash/{key}", skip_host=True,
                        skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        for i in range(0, cut, 1 << 20):
            conn.send(body[i:min(i + (1 << 20), cut)])
        if cut < len(body):
            time.sleep(0.3)  # let the gateway stream what it has to the nodes
        cluster.kill("gateway-2")  # a whole body: at once, racing the shard writes and commit
        if cut < len(body):
            return
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn.getresponse().read()
    finally:
        conn.close()


def _tmp_files(cluster: Cluster) -> dict[str, list[str]]:
    out = {}
    for record in cluster.by_role("node"):
        tmp = Path(record.data_dir) / "tmp"
        names = sorted(os.listdir(tmp)) if tmp.exists() else []
        if names:
            out[record.name] = names
    return out


def _pending(cluster: Cluster) -> dict[str, int]:
    out = {}
    for name in cluster.names("node"):
        with NodeClient.for_node(cluster, name) as c:
            pending = c.stat().pending_writes
        if pending:
            out[name] = pending
    return out


def _versions(cluster: Cluster, bucket: str, key: str) -> dict[str, set[str]]:
    """version id -> nodes holding it, for every version any node holds."""
    held: dict[str, set[str]] = {}
    for name in cluster.names("node"):
        with NodeClient.for_node(cluster, name) as c:
            for record in c.inspect(bucket, key).versions:
                held.setdefault(record.version.version_id, set()).add(name)
    return held


def test_a_gateway_killed_mid_put_leaves_old_or_new_never_partial(cluster: Cluster) -> None:
    client = _client(cluster)
    client.create_bucket(Bucket="chaos-crash")
    old = {key: os.urandom(1_500_000) for key in ("half", "whole")}
    for key, data in old.items():
        client.put_object(Bucket="chaos-crash", Key=key, Body=data)
    new = {key: os.urandom(20 << 20) for key in old}
    outcomes = {}
    for key, fraction in (("half", 0.5), ("whole", 1.0)):
        _put_and_kill(cluster, key, new[key], fraction)
        cluster.start("gateway-2")
        got = client.get_object(Bucket="chaos-crash", Key=key)["Body"].read()
        head = _client(cluster, 1).head_object(Bucket="chaos-crash", Key=key)
        allowed = {hashlib.sha256(old[key]).hexdigest(): "old"}
        if fraction == 1.0:
            allowed[hashlib.sha256(new[key]).hexdigest()] = "new"
        seen = allowed.get(hashlib.sha256(got).hexdigest())
        assert seen is not None, f"{key}: read {len(got)} bytes that are neither old nor new"
        assert head["ContentLength"] == len(got)
        outcomes[key] = seen
    assert outcomes["half"] == "old"

    def swept() -> bool:
        if _tmp_files(cluster) or _pending(cluster):
            return False
        for key in old:
            if any(len(nodes) != 6 for nodes in _versions(cluster, "chaos-crash", key).values()):
                return False
        return True

    took = wait_until(swept, timeout=45, interval=1.0)
    assert took is not None, (f"left behind: tmp {_tmp_files(cluster)}, pending "
                              f"{_pending(cluster)}, versions "
                              f"{ {k: _versions(cluster, 'chaos-crash', k) for k in old} }")
    for key, before in old.items():
        got = client.get_object(Bucket="chaos-crash", Key=key)["Body"].read()
        assert got == (before if outcomes[key] == "old" else new[key])
    print(f"\ngateway-2 killed mid-PUT of 20 MiB: after 50% of the body -> {outcomes['half']} "
          f"object visible; after 100% -> {outcomes['whole']} object visible; no tmp data, "
          f"no pending write, all 6 nodes agreeing {took:.1f}s later")


def _blocks(cluster: Cluster, node: str, bucket: str, key: str) -> int:
    with NodeClient.for_node(cluster, node) as c:
        record = next(v for v in c.inspect(bucket, key).versions if v.is_latest)
    g = record.version.geometry
    if record.version.is_inline or not record.shards:
        return 1
    return max(1, -(-record.shards[0].shard_size // g.shard_block_size))


def _verified(cluster: Cluster, node: str, bucket: str, key: str) -> bool:
    with NodeClient.for_node(cluster, node) as c:
        return c.stub.VerifyShard(pb.VerifyShardRequest(bucket=bucket, key=key),
                                  timeout=20).ok


def test_corrupt_blocks_read_correctly_and_the_scanner_repairs_them(cluster: Cluster) -> None:
    rng = random.Random(17)
    client = _client(cluster)
    client.create_bucket(Bucket="chaos-rot")
    sizes = [20_000, 150_000, 900_000, 2_500_000, 5_000_000]
    data = {f"rot-{i:02d}": os.urandom(sizes[i % len(sizes)]) for i in range(20)}
    for key, body in data.items():
        client.put_object(Bucket="chaos-rot", Key=key, Body=body)
    before = _rebuilt(cluster)
    nodes = cluster.names("node")
    damaged: list[tuple[str, str]] = []
    for key in rng.sample(sorted(data), 12):
        for node in rng.sample(nodes, rng.choice((1, 2))):  # at most m shards of a block
            block = rng.randrange(_blocks(cluster, node, "chaos-rot", key))
            corrupt_shard(cluster, node, "chaos-rot", key, block=block)
            damaged.append((node, key))
    # the deep scanner (every 3 s) may already be repairing: the proof that each fault was
    # real is the gateways' count of rebuilt shards at the end
    read_now = sorted({k for _, k in damaged})[::2]  # half are read; the scanner finds the rest
    start = time.monotonic()
    for key in read_now:
        got = _client(cluster, rng.randrange(2)).get_object(Bucket="chaos-rot", Key=key)
        assert got["Body"].read() == data[key], key
    repaired = wait_until(lambda: all(_verified(cluster, n, "chaos-rot", k)
                                      for n, k in damaged), timeout=90, interval=1.0)
    assert repaired is not None, [f"{n}:{k}" for n, k in damaged
                                  if not _verified(cluster, n, "chaos-rot", k)]
    for key, body in data.items():
        assert client.get_object(Bucket="chaos-rot", Key=key)["Body"].read() == body
    assert _rebuilt(cluster) - before >= len(damaged)
    print(f"\ncorrupted {len(damaged)} shard blocks of {len({k for _, k in damaged})} objects "
          f"on {len({n for n, _ in damaged})} nodes; {len(read_now)} objects read correct at "
          f"once; every block verified again {time.monotonic() - start:.1f}s later "
          f"(shards rebuilt by the gateways: {_rebuilt(cluster) - before:.0f}); all "
          f"{len(data)} objects read back bit-exact")


def _rebuilt(cluster: Cluster) -> float:
    return sum(gateway_metrics(cluster, g.address).get("tessera_heal_shards_rebuilt_total", 0)
               for g in cluster.by_role("gateway"))
