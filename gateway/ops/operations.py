"""The gateway's operations endpoints and per-request bookkeeping, in one object the S3
application holds: health (`/minio/health/*`), metrics (`/minio/v2/metrics/cluster`), and the
request's metrics and access-log line when it ends.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.ops.access_log import log_request
from gateway.ops.health import HealthMonitor, HealthSnapshot
from gateway.ops.kms_probe import KMSProbe
from gateway.ops.metrics import CONTENT_TYPE, GatewayMetrics, MetricSources
from gateway.ops.prometheus_auth import PrometheusAuth

__all__ = ["HEALTH_PATHS", "METRICS_PATH", "OPS_PATHS", "Operations"]

HEALTH_PATHS = ("/minio/health/live", "/minio/health/ready", "/minio/health/cluster",
                "/minio/health/cluster/read")
METRICS_PATH = "/minio/v2/metrics/cluster"
OPS_PATHS = frozenset((*HEALTH_PATHS, METRICS_PATH))
_OPS_APIS = frozenset(("HealthCheck", "Metrics"))


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
        self.monitor = HealthMonitor(layer, KMSProbe(kes_config) if kes_config else None)
        self.metrics = GatewayMetrics(MetricSources(layer, kes=kes, kms_cache=kms_cache),
                                      server)

    @staticmethod
    def api_of(path: str) -> str:
        return "Metrics" if path == METRICS_PATH else "HealthCheck"

    def metrics_denied(self, authorization: str | None) -> str:
        """"" when the metrics request may be answered, else why not."""
        return self.auth.check(authorization)

    async def answer(self, path: str, method: str) -> tuple[int, dict[str, str], bytes]:
        """Status, headers and body for a GET or HEAD of one of OPS_PATHS (authorised)."""
        if path == METRICS_PATH:
            snapshot = await self.monitor.snapshot()
            return 200, {"content-type": CONTENT_TYPE}, self.metrics.render(snapshot)
        headers = {"content-type": "text/plain", "cache-control": "no-store"}
        if path == "/minio/health/live":
            return 200, headers, b""
        snap = await self.monitor.snapshot()
        if path == "/minio/health/ready":
            status, body = (200, b"") if snap.ready else (503, snap.why_not_ready().encode())
        elif path == "/minio/health/cluster":
            status, body = (200 if snap.writable else 503), b""
            if snap.sets:
                headers["x-minio-write-quorum"] = str(max(s.write_quorum for s in snap.sets))
        else:
            status, body = (200 if snap.readable else 503), b""
            if snap.sets:
                headers["x-minio-read-quorum"] = str(max(s.read_quorum for s in snap.sets))
        return status, headers, b"" if method == "HEAD" else body

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
