"""The gateway's operations surface in-process: Prometheus bearer tokens, the access-log line,
readiness rules, the health monitor's single measurement per interval, and the metrics and
health endpoints of the ASGI application over the in-memory layer."""

from __future__ import annotations

import asyncio
import logging
from types import SimpleNamespace

import pytest

from gateway.config import load_config
from gateway.objects.memory import MemoryObjectLayer
from gateway.ops.access_log import format_line
from gateway.ops.health import HealthMonitor, HealthSnapshot, NodeStat, SetState
from gateway.ops.kms_probe import KMSEndpointProbe
from gateway.ops.prometheus_auth import PrometheusAuth, make_token
from gateway.s3.server import S3Application
from gateway.storage_client import NodeCallError
from tests.unit.test_s3_app import ACCESS, SECRET, _call

METRICS = "/minio/v2/metrics/cluster"


def _raw(app: S3Application, method: str, path: str, headers: dict[str, str] | None = None):
    """An unsigned request (health probes and scrapers send no SigV4)."""
    scope = {"type": "http", "method": method, "path": path, "raw_path": path.encode(),
             "query_string": b"", "scheme": "http",
             "headers": [(b"host", b"127.0.0.1:9000")]
             + [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]}
    sent: list[dict] = []

    async def receive():
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return (sent[0]["status"], {k.decode(): v.decode() for k, v in sent[0]["headers"]},
            b"".join(m.get("body", b"") for m in sent[1:]))


def _app(**env: str) -> S3Application:
    config = load_config(["--listen", "127.0.0.1:9000", "--memory"],
                         {"MINIO_ROOT_USER": ACCESS, "MINIO_ROOT_PASSWORD": SECRET, **env})
    return S3Application(config, MemoryObjectLayer())


# ---- bearer tokens ----

def test_a_token_made_with_the_root_credentials_is_accepted():
    auth = PrometheusAuth("jwt", ACCESS, SECRET)
    assert auth.check(f"Bearer {make_token(ACCESS, SECRET)}") == ""


@pytest.mark.parametrize(("header", "why"), [
    (None, "Bearer token"),
    ("Basic abc", "Bearer token"),
    ("Bearer not-a-jwt", "not a JWT"),
    (f"Bearer {make_token(ACCESS, 'another-secret')}", "signature does not match"),
    (f"Bearer {make_token('someone-else', SECRET)}", "not for this server's access key"),
    (f"Bearer {make_token(ACCESS, SECRET, expires_in=-10)}", "expired"),
])
def test_bad_tokens_are_refused_with_the_reason(header, why):
    assert why in PrometheusAuth("jwt", ACCESS, SECRET).check(header)


def test_public_needs_no_token_and_unknown_auth_types_are_refused():
    assert PrometheusAuth("public", ACCESS, SECRET).check(None) == ""
    with pytest.raises(ValueError, match="jwt or public"):
        PrometheusAuth("none", ACCESS, SECRET)


# ---- the access-log line ----

def test_log_values_are_quoted_so_a_line_stays_one_line():
    line = format_line({"id": "X1", "key": 'a b"\nc\x01', "bucket": "photos", "ms": "1.5"})
    assert line == r'id=X1 key="a b\"\nc\x01" bucket=photos ms=1.5'
    assert "\n" not in line


# ---- readiness rules ----

def _snapshot(online: int, kms: tuple[bool, ...] | None) -> HealthSnapshot:
    nodes = tuple(f"node-{i}" for i in range(1, 7))
    sets = (SetState(0, nodes, nodes[:online], write_quorum=4, read_quorum=4),)
    probes = None if kms is None else tuple(
        KMSEndpointProbe(f"https://127.0.0.1:{7373 + i}", ok, "ok" if ok else "connection "
                         "refused") for i, ok in enumerate(kms))
    return HealthSnapshot(0.0, (), sets, probes)


def test_ready_needs_write_quorum_everywhere_and_one_kes_endpoint():
    assert _snapshot(6, None).ready
    assert _snapshot(4, (False, True)).ready
    below = _snapshot(3, (True,))
    assert not below.ready and not below.writable and not below.readable
    assert "erasure set 0 has 3 of 6 nodes online, below its write quorum of 4" in \
        below.why_not_ready()
    no_kes = _snapshot(6, (False, False))
    assert not no_kes.ready and no_kes.writable
    assert no_kes.why_not_ready() == ("no KES endpoint answers (https://127.0.0.1:7373: "
                                      "connection refused; https://127.0.0.1:7374: "
                                      "connection refused)")


class _Node:
    def __init__(self, name: str, pool: _Pool):
        self.name, self.pool = name, pool

    async def unary(self, method: str, request, *, deadline: float):
        self.pool.calls += 1
        await asyncio.sleep(0.01)
        if self.name in self.pool.down:
            import grpc
            raise NodeCallError(self.name, grpc.StatusCode.UNAVAILABLE, "", "refused")
        return SimpleNamespace(disk_total=100, disk_free=40, objects=3, bytes=60,
                               pending_writes=0, uptime_seconds=5.0)


class _Pool:
    def __init__(self, down: set[str]):
        self.down, self.calls = down, 0

    def client(self, name: str) -> _Node:
        return _Node(name, self)


def test_the_monitor_measures_once_per_interval_for_any_number_of_callers():
    from common.topology import Topology
    from gateway.placement import Placement

    topology = Topology.from_addresses([f"127.0.0.1:{9200 + i}" for i in range(6)], 6)
    pool = _Pool(down={"node-2", "node-5", "node-6"})
    layer = SimpleNamespace(ctx=SimpleNamespace(placement=Placement(topology, 2), pool=pool))
    monitor = HealthMonitor(layer, ttl=30)

    async def run() -> list[HealthSnapshot]:
        return list(await asyncio.gather(*(monitor.snapshot() for _ in range(20))))

    snaps = asyncio.run(run())
    assert pool.calls == 6  # one Stat per node, shared by all 20 callers
    snap = snaps[0]
    assert all(s is snap for s in snaps)
    (one,) = snap.sets
    assert one.online == ("node-1", "node-3", "node-4") and one.write_quorum == 4
    assert not snap.ready
    node2 = next(n for n in snap.nodes if n.name == "node-2")
    assert node2 == NodeStat("node-2", False, "node-2: UNAVAILABLE")
    assert next(n for n in snap.nodes if n.name == "node-1").disk_free == 40


# ---- the endpoints of the application ----

def test_metrics_need_a_token_by_default_and_count_requests_and_bytes(caplog):
    app = _app()
    status, _, body = _raw(app, "GET", METRICS)
    assert status == 403 and b"<Code>AccessDenied</Code>" in body
    assert _call(app, "PUT", "/ops-bucket")[0] == 200
    with caplog.at_level(logging.INFO, logger="tessera.gateway.access"):
        assert _call(app, "PUT", "/ops-bucket/k", body=b"x" * 1000)[0] == 200
    line = caplog.records[-1].getMessage()
    assert line.startswith("id=") and "api=PutObject" in line and "status=200" in line
    assert "bucket=ops-bucket key=k" in line and "in=1000" in line and "Signature" not in line
    token = make_token(ACCESS, SECRET)
    status, headers, body = _raw(app, "GET", METRICS,
                                 headers={"Authorization": f"Bearer {token}"})
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'tessera_s3_requests_total{api="PutObject",status="200"} 1.0' in text
    assert 'tessera_s3_received_bytes_total{api="PutObject"} 1000.0' in text
    assert 'tessera_s3_requests_total{api="GetObject"' not in text
    assert 'tessera_s3_request_duration_seconds_count{api="CreateBucket"} 1.0' in text
    assert "_created" not in text
    assert "AccessDenied" not in text  # the refused scrape is not an S3 request


def test_public_metrics_and_health_answer_get_and_head_without_credentials():
    app = _app(MINIO_PROMETHEUS_AUTH_TYPE="public")
    assert _raw(app, "GET", METRICS)[0] == 200
    for path in ("/minio/health/live", "/minio/health/ready", "/minio/health/cluster",
                 "/minio/health/cluster/read"):
        for method in ("GET", "HEAD"):
            status, _, body = _raw(app, method, path)
            assert (status, body) == (200, b""), (method, path)
