"""Shared pieces of the chaos tests: the settings that make healing and sweeping quick enough
to watch in a test, restoring a cluster between tests, and what the nodes themselves say about
each key (InspectKey), which is how the tests check healing without trusting the gateway."""

from __future__ import annotations

import contextlib
import http.client
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import grpc
from prometheus_client.parser import text_string_to_metric_families

from cluster.chaos import ChaosLoad, LoadReport
from cluster.launcher import Cluster
from cluster.load_state import ABSENT
from gateway.ops.prometheus_auth import make_token
from tests.nodeclient import NodeClient

__all__ = ["HEAL_FAST", "agreement", "gateway_metrics", "print_report", "restore", "stopped",
           "wait_until"]

# Healing and scanning paced for a test instead of a production cluster: heal a version as
# soon as its own PUT can no longer roll it back (1 s instead of 22 s), retry entries that
# waited for an offline node within 2 s, scan every 3 s, and without a rate limit.
HEAL_FAST = {
    "TESSERA_HEAL_COMMIT_WINDOW": "1",
    "TESSERA_HEAL_SETTLE": "0.2",
    "TESSERA_HEAL_DEFER_MAX": "2",
    "TESSERA_HEAL_RATE": "0",
    "TESSERA_HEAL_WORKERS": "4",
    "TESSERA_HEAL_DANGLING_GRACE": "5",
    "TESSERA_SCANNER_INTERVAL": "3",
    "TESSERA_SCANNER_RATE": "0",
}


def restore(cluster: Cluster, timeout: float = 30.0) -> None:
    """Every process running again (paused ones resumed, dead ones started, nodes first), and
    every gateway using every node again. A gateway skips a node for a back-off after failures
    (a returning node is retried after ~10 s); its health survey (the one behind /ready and
    the metrics) asks each node for Stat and ends that back-off at once, as a load balancer's
    probes would. So each test starts with gateways that see the whole cluster."""
    for role in ("node", "kes", "gateway"):
        for name in cluster.names(role):
            state = cluster.state_of(name)
            if state == "paused":
                cluster.resume(name)
            elif state == "down":
                cluster.start(name)
    for gateway in cluster.by_role("gateway"):
        waited = wait_until(lambda g=gateway: _whole(cluster, g.address), timeout, 0.3)
        assert waited is not None, f"{gateway.name} does not use every node after {timeout:.0f}s"


def gateway_metrics(cluster: Cluster, address: str) -> dict[str, float]:
    """`name{labels}` -> value of every sample a gateway exposes (empty if unreachable)."""
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", "/minio/v2/metrics/cluster",
                     headers={"Authorization": f"Bearer {make_token(*cluster.credentials)}"})
        resp = conn.getresponse()
        body = resp.read().decode()
    except (OSError, http.client.HTTPException):
        return {}
    finally:
        conn.close()
    if resp.status != 200:
        return {}
    out = {}
    for family in text_string_to_metric_families(body):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            out[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return out


def _whole(cluster: Cluster, address: str) -> bool:
    metrics = gateway_metrics(cluster, address)
    nodes = len(cluster.names("node"))
    online = sum(v for k, v in metrics.items() if k.startswith("tessera_node_online{"))
    sidelined = sum(v for k, v in metrics.items() if k.startswith("tessera_node_sidelined{"))
    return online == nodes and sidelined == 0


@contextlib.contextmanager
def stopped(cluster: Cluster, *names: str) -> Iterator[None]:
    """SIGKILL `names` for the block; they are started again after it, pass or fail."""
    try:
        for name in names:
            cluster.kill(name)
        yield
    finally:
        for name in names:
            if cluster.state_of(name) == "down":
                cluster.start(name)


def wait_until(predicate: Callable[[], bool], timeout: float,
               interval: float = 0.5) -> float | None:
    """Seconds until `predicate()` held, or None if it did not within `timeout`."""
    start = time.monotonic()
    while True:
        if predicate():
            return time.monotonic() - start
        if time.monotonic() - start > timeout:
            return None
        time.sleep(interval)


@dataclass(frozen=True)
class Latest:
    """A node's latest version of a key: id, delete marker, every shard file present."""

    version_id: str
    delete_marker: bool
    whole: bool


def latest(client: NodeClient, bucket: str, key: str) -> Latest | None:
    try:
        reply = client.inspect(bucket, key)
    except grpc.RpcError as exc:
        if exc.code() == grpc.StatusCode.NOT_FOUND:
            return None
        raise
    record = next((v for v in reply.versions if v.is_latest), None)
    if record is None:
        return None
    v = record.version
    whole = v.delete_marker or v.is_inline or (
        bool(record.shards) and all(s.present for s in record.shards))
    return Latest(v.version_id, v.delete_marker, whole)


def agreement(cluster: Cluster, load: ChaosLoad, nodes: Iterable[str] | None = None
              ) -> list[str]:
    """Keys on which the nodes do not (yet) hold the load's acknowledged state completely:
    a present object must be the same latest version, whole, on every node; a deleted one
    must be absent or a delete marker everywhere."""
    names = list(nodes or cluster.names("node"))
    clients = {n: NodeClient.for_node(cluster, n) for n in names}
    problems = []
    try:
        for key in load.book.keys:
            expected = key.settled
            seen = {n: latest(c, load.spec.bucket, key.name) for n, c in clients.items()}
            if expected is None:
                problems.append(f"{key.name}: state unknown to the load")
            elif expected is ABSENT:
                live = [n for n, v in seen.items() if v is not None and not v.delete_marker]
                if live:
                    problems.append(f"{key.name}: deleted, but live on {', '.join(live)}")
            else:
                ids = {v.version_id for v in seen.values() if v is not None}
                bad = [n for n, v in seen.items() if v is None or v.delete_marker
                       or not v.whole]
                if len(ids) != 1 or bad:
                    problems.append(f"{key.name}: versions {sorted(ids)}, missing or partial "
                                    f"on {', '.join(bad) or '-'}")
    finally:
        for c in clients.values():
            c.close()
    return problems


def print_report(title: str, report: LoadReport, **extra: object) -> None:
    report.extra.update(extra)
    print("\n" + report.summary(title))
