"""The gateway's Prometheus metrics (`/minio/v2/metrics/cluster`): request counters and latency
histograms updated per request, and gauges read at scrape time from the parts that keep
their own statistics (the node health survey, the node pool, the healer, the KES client, the
data-key cache). Names and meanings are listed in docs/design/operations.md.

Each gateway has its own registry (several apps may share a test process) and reports what it
saw: request metrics are this gateway's, cluster gauges are the cluster as this gateway sees
it, and heal/KES counters are this gateway's since it started; sum over gateways for totals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gateway.ops.health import HealthSnapshot

__all__ = ["CONTENT_TYPE", "GatewayMetrics", "MetricSources"]

CONTENT_TYPE = CONTENT_TYPE_LATEST
# seconds: small requests land in the first buckets, 20 MiB objects and node timeouts in the last
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
VERSION = "0.1.0"

# `*_created` timestamps double the exposition for nothing a dashboard uses
disable_created_metrics()


class MetricSources:
    """Where the scrape-time gauges come from; each getter may return None (not present)."""

    def __init__(self, layer: Any, *, kes: Any = None, kms_cache: Any = None,
                 drain: Any = None):
        self.layer = layer
        self.kes = kes  # kes.client.KESClient
        self.kms_cache = kms_cache  # gateway.crypto.cache.CachingKMS
        self.drain = drain  # gateway.ops.drain.DrainSwitch

    def layer_statistics(self) -> Any:
        stats = getattr(self.layer, "statistics", None)
        return stats() if callable(stats) else None

    def heal_statistics(self) -> Any:
        healer = getattr(self.layer, "healer", None)
        return healer.statistics() if healer is not None else None

    def kes_statistics(self) -> Any:
        return self.kes.statistics() if self.kes is not None else None

    def cache_statistics(self) -> Any:
        stats = getattr(self.kms_cache, "statistics", None)
        return stats() if callable(stats) else None


class GatewayMetrics:
    """Per-request instruments plus a scrape-time collector over `MetricSources`."""

    def __init__(self, sources: MetricSources, server: str = ""):
        self.registry = CollectorRegistry(auto_describe=False)
        self.sources = sources
        self.server = server
        self.started = time.time()
        self.snapshot: HealthSnapshot | None = None
        r = self.registry
        self.requests = Counter("tessera_s3_requests", "S3 requests answered, by API and "
                                "HTTP status", ["api", "status"], registry=r)
        self.received = Counter("tessera_s3_received_bytes", "Request body bytes received",
                                ["api"], registry=r)
        self.sent = Counter("tessera_s3_sent_bytes", "Response body bytes sent", ["api"],
                            registry=r)
        self.latency = Histogram("tessera_s3_request_duration_seconds", "Time from the "
                                 "request's arrival to its last byte sent, by API", ["api"],
                                 buckets=LATENCY_BUCKETS, registry=r)
        self._counts: dict[tuple[str, int], Any] = {}
        self._per_api: dict[str, tuple[Any, Any, Any]] = {}
        self.in_flight = Gauge("tessera_s3_requests_in_flight", "S3 requests being served",
                               registry=r)
        r.register(_ScrapeCollector(self))

    def observe(self, api: str, status: int, received: int, sent: int, seconds: float) -> None:
        # label children are cached: `labels()` costs more than the update itself
        count = self._counts.get((api, status))
        if count is None:
            count = self._counts[(api, status)] = self.requests.labels(api, str(status))
        count.inc()
        children = self._per_api.get(api)
        if children is None:
            children = self._per_api[api] = (self.received.labels(api), self.sent.labels(api),
                                             self.latency.labels(api))
        if received:
            children[0].inc(received)
        if sent:
            children[1].inc(sent)
        children[2].observe(seconds)

    def render(self, snapshot: HealthSnapshot | None) -> bytes:
        """The text exposition, with cluster gauges from `snapshot`."""
        self.snapshot = snapshot
        return generate_latest(self.registry)


class _ScrapeCollector:
    """Yields the gauges and counters that other parts keep, at scrape time."""

    def __init__(self, metrics: GatewayMetrics):
        self.m = metrics

    def collect(self) -> Iterator[Metric]:
        m = self.m
        info = GaugeMetricFamily("tessera_build_info", "Version of this gateway",
                                 labels=["version", "server"])
        info.add_metric([VERSION, m.server], 1)
        yield info
        yield _gauge("tessera_gateway_uptime_seconds", "Seconds since this gateway started",
                     time.time() - m.started)
        drain = m.sources.drain
        yield _gauge("tessera_gateway_draining", "1 while the operator's drain file exists "
                     "(ready answers 503, S3 is still served)",
                     1 if drain is not None and drain.draining else 0)
        for producer in (_cluster, _node_pool, _heal, _kes, _cache):
            yield from producer(m)


def _gauge(name: str, doc: str, value: float, labels: dict[str, str] | None = None
           ) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, doc, labels=list(labels or {}))
    family.add_metric(list((labels or {}).values()), value)
    return family


def _counter(name: str, doc: str, value: float) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, value=value)


def _cluster(m: GatewayMetrics) -> Iterator[Metric]:
    snap = m.snapshot
    if snap is None:
        return
    online = GaugeMetricFamily("tessera_cluster_nodes_online", "Storage nodes answering, "
                               "per erasure set", labels=["set"])
    offline = GaugeMetricFamily("tessera_cluster_nodes_offline", "Storage nodes not "
                                "answering, per erasure set", labels=["set"])
    wq = GaugeMetricFamily("tessera_cluster_write_quorum", "Nodes a write needs, per set",
                           labels=["set"])
    rq = GaugeMetricFamily("tessera_cluster_read_quorum", "Nodes a read needs, per set",
                           labels=["set"])
    writable = GaugeMetricFamily("tessera_cluster_set_writable", "1 when the set has its "
                                 "write quorum", labels=["set"])
    for s in snap.sets:
        label = [str(s.index)]
        online.add_metric(label, len(s.online))
        offline.add_metric(label, len(s.nodes) - len(s.online))
        wq.add_metric(label, s.write_quorum)
        rq.add_metric(label, s.read_quorum)
        writable.add_metric(label, 1 if s.writable else 0)
    yield from (online, offline, wq, rq, writable)
    yield _gauge("tessera_cluster_health_status", "1 when every set has its write quorum "
                 "(what /minio/health/cluster answers 200 for)", 1 if snap.writable else 0)
    yield _gauge("tessera_cluster_ready", "1 when /minio/health/ready answers 200",
                 1 if snap.ready else 0)
    yield from _node_stats(snap)
    if snap.kms is not None:
        up = GaugeMetricFamily("tessera_kms_endpoint_reachable", "1 when the KES endpoint "
                               "answered the last status probe", labels=["endpoint"])
        for probe in snap.kms:
            up.add_metric([probe.endpoint], 1 if probe.reachable else 0)
        yield up


def _node_stats(snap: HealthSnapshot) -> Iterator[Metric]:
    families = {
        "online": GaugeMetricFamily("tessera_node_online", "1 when the node answered Stat",
                                    labels=["node"]),
        "disk_total": GaugeMetricFamily("tessera_node_disk_total_bytes", "Size of the "
                                        "node's data filesystem", labels=["node"]),
        "disk_free": GaugeMetricFamily("tessera_node_disk_free_bytes", "Free bytes on the "
                                       "node's data filesystem", labels=["node"]),
        "objects": GaugeMetricFamily("tessera_node_objects", "Latest object versions the "
                                     "node holds", labels=["node"]),
        "bytes": GaugeMetricFamily("tessera_node_shard_bytes", "Shard bytes the node "
                                   "stores", labels=["node"]),
        "pending_writes": GaugeMetricFamily("tessera_node_pending_writes", "Shard writes "
                                            "staged but not committed", labels=["node"]),
    }
    for node in snap.nodes:
        families["online"].add_metric([node.name], 1 if node.online else 0)
        if node.online:
            for field in ("disk_total", "disk_free", "objects", "bytes", "pending_writes"):
                families[field].add_metric([node.name], getattr(node, field))
    yield from families.values()


def _node_pool(m: GatewayMetrics) -> Iterator[Metric]:
    stats = m.sources.layer_statistics()
    nodes = getattr(stats, "nodes", None)
    if not nodes:
        return
    failures = CounterMetricFamily("tessera_node_call_failures", "Node calls that failed in "
                                   "transport (unreachable, timed out)", labels=["node"])
    sidelined = GaugeMetricFamily("tessera_node_sidelined", "1 while the gateway skips the "
                                  "node after failures", labels=["node"])
    for state in nodes:
        failures.add_metric([state.name], state.failures)
        sidelined.add_metric([state.name], 0 if state.state == "up" else 1)
    yield failures
    yield sidelined
    yield _counter("tessera_parity_upgraded_writes", "New objects and multipart uploads "
                   "written with raised parity because nodes of their set were offline",
                   getattr(stats, "parity_upgrades", 0))


_HEAL_COUNTERS = (
    ("queued", "tessera_heal_reports", "Heal reports received (writes that missed a node, "
     "degraded reads, the scanner)"),
    ("dropped", "tessera_heal_reports_dropped", "Heal reports refused because the queue was "
     "full"),
    ("checked", "tessera_heal_objects_checked", "Objects the healer examined"),
    ("healed", "tessera_heal_objects_healed", "Objects where the healer repaired something"),
    ("failed", "tessera_heal_objects_failed", "Heal attempts that failed (retried later)"),
    ("deferred", "tessera_heal_objects_deferred", "Heal attempts that waited for an offline "
     "node"),
    ("shards_rebuilt", "tessera_heal_shards_rebuilt", "Shard copies rebuilt"),
    ("bytes_rebuilt", "tessera_heal_bytes_rebuilt", "Bytes of shard rebuilt"),
    ("dangling_rolled_back", "tessera_heal_dangling_rolled_back", "Versions held by too few "
     "nodes to read, rolled back"),
)


def _heal(m: GatewayMetrics) -> Iterator[Metric]:
    stats = m.sources.heal_statistics()
    if stats is None:
        queue = getattr(m.sources.layer_statistics(), "heal_queue", None)
        if queue is not None:  # a layer without a healer still reports what it queued
            yield _gauge("tessera_heal_backlog", "Objects waiting to be healed", queue.queued)
        return
    yield _gauge("tessera_heal_backlog", "Objects waiting to be healed (durable queue)",
                 stats.backlog)
    yield _gauge("tessera_heal_in_flight", "Objects being healed now", stats.in_flight)
    yield _gauge("tessera_heal_dead_letters", "Objects whose heal failed too often (kept for "
                 "an operator)", stats.dead_letters)
    yield _gauge("tessera_heal_rate", "Objects healed per second over the last minute",
                 stats.heal_rate)
    eta = stats.eta_seconds
    yield _gauge("tessera_heal_eta_seconds", "Backlog divided by heal rate (NaN while "
                 "nothing is being healed)", math.nan if eta is None else eta)
    for field, name, doc in _HEAL_COUNTERS:
        yield _counter(name, doc, getattr(stats, field))
    scanner = stats.scanner
    if scanner is not None:
        yield _counter("tessera_scanner_cycles", "Scanner cycles completed",
                       scanner.cycles_completed)
        yield _counter("tessera_scanner_keys_scanned", "Keys the scanner compared",
                       scanner.keys_scanned)
        yield _counter("tessera_scanner_keys_diverged", "Keys the scanner found the set's "
                       "nodes disagreeing on", scanner.diverged)


def _kes(m: GatewayMetrics) -> Iterator[Metric]:
    stats = m.sources.kes_statistics()
    if stats is None:
        return
    yield _counter("tessera_kms_calls", "KES calls made", stats.calls)
    yield _counter("tessera_kms_failovers", "Moves to another KES endpoint within a call",
                   stats.failovers)
    yield _counter("tessera_kms_unavailable", "KES calls that failed because no endpoint "
                   "answered", stats.unavailable)
    state = GaugeMetricFamily("tessera_kms_endpoint_up", "1 while the KES client routes calls "
                              "to the endpoint (0 while it is sidelined)", labels=["endpoint"])
    failures = CounterMetricFamily("tessera_kms_endpoint_failures", "Failed attempts on the "
                                   "endpoint", labels=["endpoint"])
    for endpoint in stats.endpoints:
        state.add_metric([endpoint.name], 1 if endpoint.state == "up" else 0)
        failures.add_metric([endpoint.name], endpoint.failures)
    yield state
    yield failures


def _cache(m: GatewayMetrics) -> Iterator[Metric]:
    stats = m.sources.cache_statistics()
    if stats is None:
        return
    hits = CounterMetricFamily("tessera_kms_cache_hits", "Data-key cache hits",
                               labels=["cache"])
    misses = CounterMetricFamily("tessera_kms_cache_misses", "Data-key cache misses",
                                 labels=["cache"])
    for cache in ("generate", "decrypt"):
        hits.add_metric([cache], getattr(stats, f"{cache}_hits"))
        misses.add_metric([cache], getattr(stats, f"{cache}_misses"))
    yield hits
    yield misses

