"""The gateway's operations endpoints and per-request bookkeeping, in one object the S3
application holds: health (`/minio/health/*`, with the maintenance check and the drain
switch), metrics (`/minio/v2/metrics/cluster`), and the request's metrics and access-log line
when it ends.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Sequence
from typing import Any

from gateway.ops.access_log import log_request
from gateway.ops.drain import DRAINING_REASON, DrainSwitch
from gateway.ops.health import HealthMonitor, HealthSnapshot
from gateway.ops.kms_probe import KMSProbe
from gateway.ops.metrics import CONTENT_TYPE, GatewayMetrics, MetricSources
from gateway.ops.peers import DRAINING_HEADER, INSTANCE_HEADER, GatewayPeers
from gateway.ops.prometheus_auth import PrometheusAuth

__all__ = ["HEALTH_PATHS", "METRICS_PATH", "NOT_LISTED", "OPS_PATHS", "Operations"]

HEALTH_PATHS = ("/minio/health/live", "/minio/health/ready", "/minio/health/cluster",
                "/minio/health/cluster/read")
METRICS_PATH = "/minio/v2/metrics/cluster"
OPS_PATHS = frozenset((*HEALTH_PATHS, METRICS_PATH))
_OPS_APIS = frozenset(("HealthCheck", "Metrics"))
NOT_LISTED = ("the topology file lists no gateways, so whether another gateway serves is "
              "unknown (add its \"gateways\" list)")


class Operations:
    """Health, metrics and the access log of one gateway.

    `kes_config`: the KES pool to probe for readiness (None: no KMS configured); `kes`: the
    gateway's KES client (its call/failover counters); `kms_cache`: the data-key cache (its
    hit/miss counters); `server`: how this gateway names itself in metrics.
    """

    def __init__(self, config: Any, layer: Any, *, kes_config: Any = None, kes: Any = None,
                 kms_cache: Any = None, server: str = ""):
        self.auth = PrometheusAuth(getattr(config, "prometheus_auth", "jwt"),
                                   config.access_key, config.secret_key)
        self.kms_probe = KMSProbe(kes_config) if kes_config else None
        self.monitor = HealthMonitor(layer, self.kms_probe)
        self.drain = DrainSwitch(getattr(config, "drain_file", None))
        self.instance_id = secrets.token_hex(8)  # how peers' probes recognise this gateway
        self.peers = GatewayPeers(_listed_gateways(layer), self.instance_id,
                                  ca=getattr(config, "node_ca", None))
        self.metrics = GatewayMetrics(MetricSources(layer, kes=kes, kms_cache=kms_cache,
                                                    drain=self.drain), server)

    @staticmethod
    def api_of(path: str) -> str:
        return "Metrics" if path == METRICS_PATH else "HealthCheck"

    def metrics_denied(self, authorization: str | None) -> str:
        """"" when the metrics request may be answered, else why not."""
        return self.auth.check(authorization)

    async def answer(self, path: str, method: str, query: Sequence[tuple[str, str]] = ()
                     ) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for a GET or HEAD of one of OPS_PATHS (authorised)."""
        if path == METRICS_PATH:
            snapshot = await self.monitor.snapshot()
            return 200, {"content-type": CONTENT_TYPE}, self.metrics.render(snapshot)
        headers = {"content-type": "text/plain", "cache-control": "no-store"}
        if path == "/minio/health/live":
            headers[INSTANCE_HEADER] = self.instance_id
            headers[DRAINING_HEADER] = "1" if self.drain.draining else "0"
            return 200, headers, b""
        if path == "/minio/health/ready" and self.drain.draining:
            return 503, headers, b"" if method == "HEAD" else DRAINING_REASON.encode()
        snap = await self.monitor.snapshot()
        if path == "/minio/health/ready":
            status, body = (200, b"") if snap.ready else (503, snap.why_not_ready().encode())
        elif path == "/minio/health/cluster":
            if ("maintenance", "true") in query:
                status, body = await self._maintenance(snap)
            else:
                status, body = (200 if snap.writable else 503), b""
            if snap.sets:
                headers["x-minio-write-quorum"] = str(max(s.write_quorum for s in snap.sets))
        else:
            status, body = (200 if snap.readable else 503), b""
            if snap.sets:
                headers["x-minio-read-quorum"] = str(max(s.read_quorum for s in snap.sets))
        return status, headers, b"" if method == "HEAD" else body

    async def _maintenance(self, snap: HealthSnapshot) -> tuple[int, bytes]:
        """MinIO's `?maintenance=true`: 412 when taking this gateway down would leave clients
        without service (a set already below write quorum, or no other gateway serving)."""
        if not snap.writable:
            return 412, snap.why_not_writable().encode()
        if not self.peers.listed:
            return 412, NOT_LISTED.encode()
        probes = await self.peers.probe()
        serving = [p.name for p in probes if p.serving]
        if not serving:
            return 412, ("no other gateway serves: " + "; ".join(
                f"{p.name}: {p.detail}" for p in probes)).encode()
        return 200, f"other gateways serving: {', '.join(serving)}".encode()

    async def snapshot(self) -> HealthSnapshot:
        return await self.monitor.snapshot()

    def request_started(self) -> None:
        self.metrics.in_flight.inc()

    def request_ended(self, fields: dict[str, Any], received: int, sent: int,
                      started: float) -> None:
        """Count the request and write its log line. `fields` holds id, api, method, bucket,
        key, query names, status, code, remote, tls; sizes and duration are added here."""
        self.metrics.in_flight.dec()
        seconds = time.monotonic() - started
        api = str(fields.get("api", "-"))
        fields.update({"in": received, "out": sent, "ms": f"{seconds * 1000:.1f}"})
        if api in _OPS_APIS:  # probes every few seconds would drown the requests
            log_request(fields, logging.DEBUG)
            return
        self.metrics.observe(api, int(fields.get("status", 0)), received, sent, seconds)
        log_request(fields)

    async def close(self) -> None:
        await self.monitor.close()
        await self.peers.close()


def _listed_gateways(layer: Any) -> tuple:
    """The gateways the layer's topology file lists (none for a layer without one)."""
    placement = getattr(getattr(layer, "ctx", None), "placement", None)
    return tuple(getattr(getattr(placement, "topology", None), "gateways", ()))
