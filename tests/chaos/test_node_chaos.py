"""Storage nodes killed and frozen under a mixed load through both gateways.

- kill -9 m (= 2) nodes of the set under load: no request fails after the client's own
  retries, and every acknowledged object reads back bit-exact;
- start them again: healing gives them every shard they missed, proven by reading every
  object with m *other* nodes down (only the healed nodes can complete a read quorum);
- SIGSTOP a node (a hang, not a crash): requests still complete, within a bounded time.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from cluster.chaos import ChaosLoad, LoadSpec, load_for
from cluster.launcher import Cluster
from tests.chaos.support import agreement, print_report, restore, stopped, wait_until

pytestmark = pytest.mark.chaos

KILLED = ("node-1", "node-2")  # m = 2 of the 4+2 set
OTHERS = ("node-3", "node-4")
HEAL_TIMEOUT = 120.0
# A frozen node costs a request at most one node deadline per phase (10 s unary/idle) before
# the pool sidelines it; with the client's retries on top, 45 s is generous.
FROZEN_BOUND = 45.0


def _spec(bucket: str, **overrides: object) -> LoadSpec:
    values: dict = {"operations": 360, "concurrency": 8, "bucket": bucket, "keys": 100,
                    "max_bytes": 96 << 20, "seed": 7}
    values.update(overrides)
    return LoadSpec(**values)


@pytest.fixture(scope="module")
def outage(chaos_cluster: Cluster) -> Iterator[tuple[ChaosLoad, dict]]:
    """The load with KILLED killed at a quarter of it; nodes left down for the tests."""
    restore(chaos_cluster)
    load = load_for(chaos_cluster, _spec("chaos-kill"))
    load.start()
    assert load.wait_progress(load.spec.operations // 4, timeout=120)
    killed_at = load.done
    for name in KILLED:
        chaos_cluster.kill(name)
    report = load.join()
    verify = load.verify_all("verify with m nodes down")
    try:
        yield load, {"report": report, "verify": verify, "killed_at": killed_at}
    finally:
        restore(chaos_cluster)


def test_killing_m_nodes_under_load_fails_no_request(outage) -> None:
    load, result = outage
    report, verify = result["report"], result["verify"]
    print_report("kill -9 node-1, node-2 under load", report,
                 **{"killed after": f"{result['killed_at']} operations"})
    print_report("read back with node-1, node-2 down", verify)
    assert report.failures == [] and report.clean
    assert report.requests >= load.spec.operations * 0.9
    assert verify.failures == [] and verify.clean
    assert verify.objects_verified == len(load.book.present()) > 20


def test_restarted_nodes_are_healed_and_serve_reads(outage, chaos_cluster: Cluster) -> None:
    load, _ = outage
    for name in KILLED:
        chaos_cluster.start(name)
    started = time.monotonic()
    healed_in = wait_until(lambda: agreement(chaos_cluster, load) == [], HEAL_TIMEOUT, 1.0)
    left = agreement(chaos_cluster, load)
    assert healed_in is not None, f"not healed after {HEAL_TIMEOUT:.0f}s: {left[:5]}"
    time_to_heal = time.monotonic() - started
    with stopped(chaos_cluster, *OTHERS):
        verify = load.verify_all("read with node-3, node-4 down")
    verify.time_to_heal = time_to_heal
    print_report("heal node-1, node-2, then read with node-3, node-4 down", verify,
                 objects=len(load.book.present()))
    assert verify.failures == [] and verify.clean
    assert verify.objects_verified == len(load.book.present())


def test_a_frozen_node_delays_requests_boundedly(cluster: Cluster) -> None:
    load = load_for(cluster, _spec("chaos-freeze", operations=240, max_bytes=48 << 20,
                                   seed=11))
    load.start()
    try:
        assert load.wait_progress(40, timeout=120)
        cluster.pause("node-5")
        frozen = time.monotonic()
        report = load.join()
        frozen_for = time.monotonic() - frozen
    finally:
        restore(cluster)
    verify = load.verify_all("verify after resume")
    print_report("SIGSTOP node-5 under load", report,
                 **{"node frozen for": f"{frozen_for:.1f}s"})
    print_report("read back after SIGCONT", verify)
    assert report.failures == [] and report.clean
    assert report.max_latency < FROZEN_BOUND, report.summary()
    assert verify.failures == [] and verify.clean


def test_an_acknowledged_object_is_never_reported_absent(cluster: Cluster) -> None:
    """Two nodes come back; the gateway still skips them for its back-off, so a PUT made
    now lands on exactly its write quorum (node-1, -2, -5, -6). Then node-5 dies: the object
    has k-1 reachable shards, so a read must answer a retryable 503 until node-5 returns,
    never 404 NoSuchKey (a client would take the object for deleted), and after node-5 is
    back the bytes must read back."""
    import boto3
    from botocore.config import Config
    from botocore.exceptions import ClientError

    access, secret = cluster.credentials
    client = boto3.session.Session().client(
        "s3", endpoint_url=cluster.gateway_url(0), aws_access_key_id=access,
        aws_secret_access_key=secret, region_name="us-east-1",
        config=Config(retries={"max_attempts": 5, "mode": "standard"}))
    client.create_bucket(Bucket="chaos-absent")
    data = os.urandom(300_000)
    with stopped(cluster, "node-3", "node-4"):
        client.put_object(Bucket="chaos-absent", Key="before", Body=b"x")  # sidelines them
    client.put_object(Bucket="chaos-absent", Key="k", Body=data)
    holders = [n for n in cluster.names("node")
               if _latest(cluster, n, "chaos-absent", "k") is not None]
    answers = []
    with stopped(cluster, "node-5"):
        for _ in range(3):
            try:
                client.get_object(Bucket="chaos-absent", Key="k")["Body"].read()
                answers.append("200")
            except ClientError as exc:
                answers.append(f"{exc.response['ResponseMetadata']['HTTPStatusCode']} "
                               f"{exc.response['Error']['Code']}")
    print(f"\nPUT right after node-3/4 returned reached {', '.join(holders)}; "
          f"GETs with node-5 down answered {answers}")
    assert not any(a.startswith("404") for a in answers), (holders, answers)
    assert client.get_object(Bucket="chaos-absent", Key="k")["Body"].read() == data


def _latest(cluster: Cluster, node: str, bucket: str, key: str):
    from tests.chaos.support import latest
    from tests.nodeclient import NodeClient

    with NodeClient.for_node(cluster, node) as c:
        return latest(c, bucket, key)
