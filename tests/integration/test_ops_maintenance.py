"""Taking a gateway out of service, on a real cluster (3 nodes EC 2+1, 2 gateways): MinIO's
maintenance check (`/minio/health/cluster?maintenance=true`: 200, or 412 when going down
would leave clients without service) and the drain switch (`python -m cluster drain`: ready
503 while S3 is still served)."""

from __future__ import annotations

import hashlib
import http.client
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.launcher import Cluster
from gateway.ops.prometheus_auth import make_token
from tests.conftest import running_cluster
from tests.integration.sse_helpers import endpoint

ROOT = Path(__file__).resolve().parents[2]
MAINTENANCE = "/minio/health/cluster?maintenance=true"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("maint"), nodes=3, gateways=2, kes=0,
                         parity=1) as c:
        yield c


def _get(cluster: Cluster, gateway: str, path: str, method: str = "GET",
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], str]:
    host, port = cluster.record(gateway).address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def _wait(cluster: Cluster, gateway: str, path: str, status: int,
          timeout: float = 15) -> tuple[int, dict[str, str], str]:
    deadline = time.monotonic() + timeout
    while True:
        answer = _get(cluster, gateway, path)
        if answer[0] == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.1)


def _tool(cluster: Cluster, *args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "cluster", "--root", str(cluster.root), *args],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _s3(cluster: Cluster, index: int = 0):
    return endpoint(cluster, index).client(signature_version="s3v4")


def test_maintenance_is_200_while_everything_is_up(cluster: Cluster) -> None:
    for gateway in ("gateway-1", "gateway-2"):
        status, headers, body = _get(cluster, gateway, MAINTENANCE)
        assert status == 200, body
        assert headers["x-minio-write-quorum"] == "2"
        other = "gateway-2" if gateway == "gateway-1" else "gateway-1"
        assert other in body
        status, headers, body = _get(cluster, gateway, MAINTENANCE, method="HEAD")
        assert (status, body) == (200, "")
        assert headers["x-minio-write-quorum"] == "2"


def test_a_drained_gateway_is_not_ready_but_serves_s3(cluster: Cluster) -> None:
    s3 = _s3(cluster, 0)
    s3.create_bucket(Bucket="drain")
    out = _tool(cluster, "drain", "gateway-1")
    assert "HTTP 503" in out
    assert (cluster.root / "gateway-1" / "drain").exists()
    status, _, body = _get(cluster, "gateway-1", "/minio/health/ready")
    assert status == 503 and "draining" in body
    assert _get(cluster, "gateway-1", "/minio/health/live")[0] == 200
    # new S3 requests are still served by the drained gateway
    data = b"served while draining " * 50
    put = s3.put_object(Bucket="drain", Key="k", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert s3.get_object(Bucket="drain", Key="k")["Body"].read() == data
    token = make_token(*cluster.credentials)
    status, _, metrics = _get(cluster, "gateway-1", "/minio/v2/metrics/cluster",
                              headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and "\ntessera_gateway_draining 1.0\n" in metrics
    # the other gateway may not go down now: gateway-1 gets no traffic from the balancer
    status, _, body = _get(cluster, "gateway-2", MAINTENANCE)
    assert status == 412 and "gateway-1: draining" in body, body
    assert _get(cluster, "gateway-2", "/minio/health/ready")[0] == 200

    started = time.monotonic()
    (cluster.root / "gateway-1" / "drain").unlink()
    status, _, body = _wait(cluster, "gateway-1", "/minio/health/ready", 200, timeout=5)
    assert status == 200, body
    assert time.monotonic() - started < 2.5
    status, _, metrics = _get(cluster, "gateway-1", "/minio/v2/metrics/cluster",
                              headers={"Authorization": f"Bearer {token}"})
    assert "\ntessera_gateway_draining 0.0\n" in metrics
    assert _get(cluster, "gateway-2", MAINTENANCE)[0] == 200


def test_the_cluster_tool_undrains(cluster: Cluster) -> None:
    _tool(cluster, "drain", "gateway-2")
    assert _get(cluster, "gateway-2", "/minio/health/ready")[0] == 503
    status = _tool(cluster, "status").splitlines()
    assert any(line.startswith("gateway-2 ") and "(draining" in line for line in status), status
    assert not any(line.startswith("gateway-1 ") and "draining" in line for line in status)
    out = _tool(cluster, "undrain", "gateway-2")
    assert "HTTP 200" in out and not (cluster.root / "gateway-2" / "drain").exists()
    assert _get(cluster, "gateway-2", "/minio/health/ready")[0] == 200


def test_the_only_live_gateway_may_not_go_down(cluster: Cluster) -> None:
    cluster.kill("gateway-2")
    try:
        status, headers, body = _get(cluster, "gateway-1", MAINTENANCE)
        assert status == 412
        # a probe connection kept alive from before the kill is reset rather than refused
        assert re.search(r"gateway-2: (connection refused|.*Connection reset by peer)", body), body
        assert "gateway-1: this gateway" in body
        assert headers["x-minio-write-quorum"] == "2"
        assert _get(cluster, "gateway-1", "/minio/health/cluster")[0] == 200  # quorum is fine
    finally:
        cluster.start("gateway-2")
    assert _get(cluster, "gateway-1", MAINTENANCE)[0] == 200


def test_maintenance_is_412_below_write_quorum(cluster: Cluster) -> None:
    for name in ("node-1", "node-2"):  # 1 of 3 left: EC 2+1 cannot write
        cluster.kill(name)
    try:
        status, headers, body = _wait(cluster, "gateway-1", MAINTENANCE, 412)
        assert status == 412, body
        assert "below its write quorum of 2" in body
        assert headers["x-minio-write-quorum"] == "2"
        assert _get(cluster, "gateway-1", "/minio/health/cluster")[0] == 503
        assert _get(cluster, "gateway-2", MAINTENANCE)[0] == 412  # even with a peer serving
    finally:
        for name in ("node-1", "node-2"):
            cluster.start(name)
    assert _wait(cluster, "gateway-1", MAINTENANCE, 200)[0] == 200
