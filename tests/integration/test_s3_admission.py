"""MINIO_API_REQUESTS_MAX / MINIO_API_REQUESTS_DEADLINE on a real gateway: with its places
taken by slow uploads, one more request waits, then answers 503 SlowDown (boto3 sees the
code); health probes still answer; a place freed serves again; an abandoned upload leaves
nothing behind."""

from __future__ import annotations

import http.client
import os
import socket
import time
from collections.abc import Iterator

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

from cluster.launcher import Cluster
from tests.conftest import running_cluster
from tests.integration.sse_helpers import endpoint

BUCKET = "gate"
SIZE = 256 << 10


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {"MINIO_API_REQUESTS_MAX": "2", "MINIO_API_REQUESTS_DEADLINE": "800ms"}
    with running_cluster(tmp_path_factory.mktemp("gate"), nodes=6, gateways=1, kes=0,
                         parity=2, gateway_env=env) as c:
        yield c


def _client(cluster: Cluster):
    return endpoint(cluster).client(retries={"total_max_attempts": 1})


def _start_put(cluster: Cluster, key: str, body: bytes) -> socket.socket:
    """A signed PUT whose body stops after its first KiB: it holds a place until finished."""
    access, secret = cluster.credentials
    url = f"{cluster.gateway_url(0)}/{BUCKET}/{key}"
    request = AWSRequest("PUT", url, data=body, headers={"Content-Length": str(len(body))})
    S3SigV4Auth(Credentials(access, secret), "s3", "us-east-1").add_auth(request)
    host, port = cluster.record("gateway-1").address.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=20)
    head = [f"PUT /{BUCKET}/{key} HTTP/1.1", f"Host: {host}:{port}"]
    head += [f"{name}: {value}" for name, value in request.headers.items()
             if name.lower() != "host"]
    sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode() + body[:1024])
    return sock


def _finish_put(sock: socket.socket, body: bytes) -> int:
    sock.sendall(body[1024:])
    status = int(sock.recv(4096).split(b" ", 2)[1])
    sock.close()
    return status


def _live(cluster: Cluster) -> int:
    host, port = cluster.record("gateway-1").address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    try:
        conn.request("GET", "/minio/health/live")
        return conn.getresponse().status
    finally:
        conn.close()


def test_a_full_gateway_answers_slowdown_then_serves_again(cluster: Cluster):
    s3 = _client(cluster)
    s3.create_bucket(Bucket=BUCKET)
    kept, dropped = os.urandom(SIZE), os.urandom(SIZE)
    slow = [_start_put(cluster, "kept", kept), _start_put(cluster, "dropped", dropped)]
    try:
        time.sleep(0.5)  # both admitted and waiting for their bodies
        started = time.monotonic()
        with pytest.raises(ClientError) as refused:
            s3.head_bucket(Bucket=BUCKET)
        waited = time.monotonic() - started
        assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert 0.7 <= waited < 5, waited  # it waited for the deadline, then gave up
        with pytest.raises(ClientError) as again:
            s3.put_object(Bucket=BUCKET, Key="other", Body=b"x")
        assert again.value.response["Error"]["Code"] == "SlowDown"
        assert _live(cluster) == 200  # probes are never held back

        assert _finish_put(slow.pop(0), kept) == 200
        s3.put_object(Bucket=BUCKET, Key="other", Body=b"served")
    finally:
        for sock in slow:
            sock.close()  # the client gives up mid-body
    assert s3.get_object(Bucket=BUCKET, Key="kept")["Body"].read() == kept
    assert s3.get_object(Bucket=BUCKET, Key="other")["Body"].read() == b"served"
    deadline = time.monotonic() + 10
    while True:  # the abandoned upload's place comes back, and it left no object
        try:
            keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]
            break
        except ClientError:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    assert keys == ["kept", "other"]
    with pytest.raises(ClientError) as missing:
        s3.head_object(Bucket=BUCKET, Key="dropped")
    assert missing.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404
