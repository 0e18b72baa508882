"""/minio/health/cluster through a real cluster: 200 while every erasure set has its write
quorum, 503 once it is lost, 200 again when the nodes are back; liveness stays 200 throughout
and a write below quorum is a retryable 503 SlowDown, never a 500."""

from __future__ import annotations

import hashlib
import time
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.conftest import running_cluster
from tests.integration.s3_gateway import S3Endpoint, raw_request


def _health(endpoint: S3Endpoint, path: str):
    return raw_request(endpoint, "GET", path, headers={"Host": urlsplit(endpoint.url).netloc})


def _wait_status(endpoint: S3Endpoint, status: int, timeout: float = 20) -> int:
    deadline = time.monotonic() + timeout
    last = 0
    while time.monotonic() < deadline:
        last = _health(endpoint, "/minio/health/cluster").status
        if last == status:
            return last
        time.sleep(0.2)
    return last


@pytest.mark.chaos
def test_cluster_health_follows_write_quorum(tmp_path):
    with running_cluster(tmp_path / "cluster", nodes=6, gateways=1, kes=0, parity=2) as cluster:
        access, secret = cluster.credentials
        endpoint = S3Endpoint(cluster.gateway_url(0), cluster.gateway_url(0, https=True),
                              cluster.ca_path, access, secret)
        resp = _health(endpoint, "/minio/health/cluster")
        assert resp.status == 200
        assert resp.headers["x-minio-write-quorum"] == "4"
        client = endpoint.client()
        client.create_bucket(Bucket="health-bucket")
        for name in ("node-1", "node-2", "node-3"):  # 3 of 6 down: EC 4+2 cannot write
            cluster.kill(name)
        assert _wait_status(endpoint, 503) == 503
        assert _health(endpoint, "/minio/health/live").status == 200
        with pytest.raises(ClientError) as exc:
            client.put_object(Bucket="health-bucket", Key="k", Body=b"x")
        assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert exc.value.response["Error"]["Code"] == "SlowDown"
        for name in ("node-1", "node-2", "node-3"):
            cluster.start(name)
        assert _wait_status(endpoint, 200) == 200
        data = b"back in business"
        put = client.put_object(Bucket="health-bucket", Key="k", Body=data)
        assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
