"""Storage nodes whose disks fill up under load.

Three nodes get their data directories on small tmpfs mounts of their own (the launcher's
`node_tmpfs`; a ballast file fills them), the only safe way to fill a disk here:

- one node full: writes go on through the other five (write quorum 4), the full node keeps
  what it had intact, and once space returns it takes writes again and healing fills in what
  it missed;
- three nodes full (below write quorum): writes fail cleanly with a retryable 503 and leave
  nothing visible, reads go on, and writes succeed again once space returns.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cluster.chaos import LoadSpec, load_for
from cluster.launcher import Cluster, ClusterError
from proto import storage_pb2 as pb
from tests.chaos.support import HEAL_FAST, agreement, print_report, restore, wait_until
from tests.conftest import running_cluster
from tests.nodeclient import NodeClient

pytestmark = pytest.mark.chaos

SMALL = ("node-4", "node-5", "node-6")
DISK = "64M"


@pytest.fixture(scope="module")
def disk_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    if os.geteuid() != 0:
        pytest.skip("a node's own tmpfs needs root to mount (the launcher's node_tmpfs)")
    try:
        with running_cluster(tmp_path_factory.mktemp("disk-chaos"), nodes=6, gateways=1,
                             kes=0, parity=2, node_tmpfs={n: DISK for n in SMALL},
                             gateway_env=HEAL_FAST) as cluster:
            yield cluster
    except ClusterError as exc:
        if "cannot mount" not in str(exc):
            raise
        pytest.skip(f"cannot give a node a disk of its own here: {exc}")


@pytest.fixture
def cluster(disk_cluster: Cluster) -> Iterator[Cluster]:
    restore(disk_cluster)
    try:
        yield disk_cluster
    finally:
        for name in SMALL:
            disk_cluster.free_disk(name)
        restore(disk_cluster)


def _client(cluster: Cluster, attempts: int = 5):
    access, secret = cluster.credentials
    return boto3.session.Session().client(
        "s3", endpoint_url=cluster.gateway_url(0), aws_access_key_id=access,
        aws_secret_access_key=secret, region_name="us-east-1",
        config=Config(retries={"max_attempts": attempts, "mode": "standard"},
                      s3={"addressing_style": "path"}))


def _verified(cluster: Cluster, node: str, bucket: str, key: str) -> bool:
    with NodeClient.for_node(cluster, node) as c:
        return c.stub.VerifyShard(pb.VerifyShardRequest(bucket=bucket, key=key),
                                  timeout=20).ok


def test_one_full_node_costs_no_write_and_recovers(cluster: Cluster) -> None:
    client = _client(cluster)
    client.create_bucket(Bucket="chaos-full")
    kept = {f"kept-{i}": os.urandom(400_000) for i in range(5)}
    for key, data in kept.items():
        client.put_object(Bucket="chaos-full", Key=key, Body=data)
    filled = cluster.fill_disk("node-6")
    load = load_for(cluster, LoadSpec(operations=200, concurrency=6, bucket="chaos-full",
                                      keys=60, max_size=3 << 20, max_bytes=24 << 20,
                                      sse={"plain": 0.6, "sse-c": 0.4}, seed=23))
    report = load.run()
    verify = load.verify_all("verify with node-6 full")
    intact = all(_verified(cluster, "node-6", "chaos-full", key) for key in kept)
    freed = cluster.free_disk("node-6")
    started = time.monotonic()
    client.put_object(Bucket="chaos-full", Key="after", Body=b"a" * 300_000)
    with NodeClient.for_node(cluster, "node-6") as c:
        took_write = any(v.is_latest for v in c.inspect("chaos-full", "after").versions)
    healed = wait_until(lambda: agreement(cluster, load) == [], timeout=90, interval=1.0)
    report.time_to_heal = time.monotonic() - started if healed is not None else None
    print_report("node-6 disk full under load", report,
                 **{"ballast": f"{filled >> 20} MiB", "freed": f"{freed >> 20} MiB",
                    "node-6 kept its objects intact": intact,
                    "node-6 took a write after space returned": took_write})
    print_report("read back with node-6 full", verify)
    assert report.failures == [] and report.clean
    assert verify.failures == [] and verify.clean
    assert intact and took_write
    assert healed is not None, agreement(cluster, load)[:5]
    for key, data in kept.items():
        assert client.get_object(Bucket="chaos-full", Key=key)["Body"].read() == data


def test_below_write_quorum_writes_fail_cleanly_and_come_back(cluster: Cluster) -> None:
    client = _client(cluster)
    client.create_bucket(Bucket="chaos-fuller")
    old = os.urandom(600_000)
    client.put_object(Bucket="chaos-fuller", Key="k", Body=old)
    for name in SMALL:
        cluster.fill_disk(name)
    once = _client(cluster, attempts=1)
    refused, accepted = [], {}
    # 2 and 5 MB need shard files on every node: they cannot fit. A 10 kB object lives inside
    # the nodes' metadata database, which may still have room in pages it already holds.
    for key, size in (("k", 2_000_000), ("new-0", 2_000_000), ("new-1", 5_000_000),
                      ("small", 10_000)):
        data = os.urandom(size)
        try:
            once.put_object(Bucket="chaos-fuller", Key=key, Body=data)
        except ClientError as err:
            reply = err.response
            refused.append(f"{key} {reply['ResponseMetadata']['HTTPStatusCode']} "
                           f"{reply['Error']['Code']}")
            assert reply["ResponseMetadata"]["HTTPStatusCode"] in (503, 507), reply
        else:
            accepted[key] = data
    assert {"k", "new-0", "new-1"}.isdisjoint(accepted), accepted
    # nothing of the refused writes is visible; the old object reads as it was
    assert client.get_object(Bucket="chaos-fuller", Key="k")["Body"].read() == old
    for key in ("new-0", "new-1"):
        with pytest.raises(ClientError) as missing:
            client.head_object(Bucket="chaos-fuller", Key=key)
        assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    for key, data in accepted.items():
        assert client.get_object(Bucket="chaos-fuller", Key=key)["Body"].read() == data
    listed = client.list_objects_v2(Bucket="chaos-fuller").get("Contents", [])
    assert sorted((o["Key"], o["Size"]) for o in listed) == sorted(
        [("k", len(old))] + [(k, len(v)) for k, v in accepted.items()])
    for name in SMALL:
        cluster.free_disk(name)
    new = os.urandom(800_000)
    back = wait_until(lambda: _put_ok(client, new), timeout=30, interval=1.0)
    assert back is not None
    assert client.get_object(Bucket="chaos-fuller", Key="k")["Body"].read() == new
    print(f"\nnode-4, -5, -6 full: refused {refused}; accepted {sorted(accepted) or 'none'} "
          f"(small objects live in the metadata database); old object intact, nothing partial "
          f"listed; "
          f"space freed: writes accepted after {back:.1f}s")


def _put_ok(client, data: bytes) -> bool:
    try:
        client.put_object(Bucket="chaos-fuller", Key="k", Body=data)
    except ClientError:
        return False
    return True
