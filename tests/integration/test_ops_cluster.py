"""The operations surface on a real cluster (6 nodes, 1 gateway, 1 KES), as an operator
meets it: the files `make cluster` writes (env for the aws cli, s3cfg, Prometheus token),
health endpoints that follow quorum, metrics that count what was done, `cluster status`,
and logs that name every request but never hold a secret, a signature or an SSE-C key."""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import re
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from cluster.launcher import Cluster
from tests.conftest import running_cluster
from tests.integration.sse_helpers import endpoint

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("ops"), nodes=6, gateways=1, kes=1,
                         parity=2) as c:
        yield c


def _get(cluster: Cluster, path: str, headers: dict[str, str] | None = None,
         method: str = "GET") -> tuple[int, dict[str, str], str]:
    host, port = cluster.record("gateway-1").address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=15)
    try:
        conn.request(method, path, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read().decode()
    finally:
        conn.close()


def _client(cluster: Cluster, *, https: bool = False):
    return endpoint(cluster).client(https=https, signature_version="s3v4")


def _env_file(cluster: Cluster) -> dict[str, str]:
    lines = cluster.env_path.read_text().splitlines()
    return dict(line.removeprefix("export ").split("=", 1) for line in lines
                if line.startswith("export "))


def test_the_env_file_is_enough_for_the_aws_cli(cluster: Cluster) -> None:
    env = _env_file(cluster)
    assert Path(env["AWS_CA_BUNDLE"]).exists() and Path(env["S3CMD_CONFIG"]).exists()
    s3cfg = Path(env["S3CMD_CONFIG"]).read_text()
    assert f"host_base = {cluster.record('gateway-1').address}" in s3cfg
    assert (Path(env["S3CMD_CONFIG"]).stat().st_mode & 0o077) == 0  # it holds the secret
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "MINIO_"))}
    aws = [str(Path(sys.executable).parent / "aws")]
    run_env = {**clean, **env, "AWS_CONFIG_FILE": "/dev/null",
               "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"}
    made = subprocess.run([*aws, "s3", "mb", "s3://env-bucket"], env=run_env,
                          capture_output=True, text=True, timeout=60, check=False)
    listed = subprocess.run([*aws, "s3", "ls"], env=run_env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert made.returncode == 0, made.stderr
    assert "env-bucket" in listed.stdout, listed.stderr
    # and over HTTPS, verified with the cluster CA the env file names
    https = subprocess.run([*aws, "s3", "ls", "--endpoint-url", env["TESSERA_HTTPS_ENDPOINT"]],
                           env=run_env, capture_output=True, text=True, timeout=60,
                           check=False)
    assert "env-bucket" in https.stdout, https.stderr


def test_health_endpoints_follow_quorum(cluster: Cluster) -> None:
    for method in ("GET", "HEAD"):
        status, headers, _ = _get(cluster, "/minio/health/cluster", method=method)
        assert (status, headers["x-minio-write-quorum"]) == (200, "4")
        status, headers, _ = _get(cluster, "/minio/health/cluster/read", method=method)
        assert (status, headers["x-minio-read-quorum"]) == (200, "4")
        assert _get(cluster, "/minio/health/ready", method=method)[0] == 200
    try:
        for name in ("node-1", "node-2", "node-3"):
            cluster.kill(name)
        ready = _eventually(cluster, "/minio/health/ready", 503)  # answers are kept 1 s
        assert ready[0] == 503
        assert ready[2] == ("erasure set 0 has 3 of 6 nodes online, below its write quorum "
                            "of 4")
        assert _get(cluster, "/minio/health/cluster")[0] == 503
        assert _get(cluster, "/minio/health/cluster/read")[0] == 503
        assert _get(cluster, "/minio/health/live")[0] == 200
    finally:
        for name in ("node-1", "node-2", "node-3"):
            cluster.start(name)
    assert _eventually(cluster, "/minio/health/ready", 200)[0] == 200


def _eventually(cluster: Cluster, path: str, status: int, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        answer = _get(cluster, path)
        if answer[0] == status or time.monotonic() > deadline:
            return answer
        time.sleep(0.2)


def test_metrics_count_requests_and_see_the_cluster(cluster: Cluster) -> None:
    client = _client(cluster)
    client.create_bucket(Bucket="metrics-bucket")
    for i in range(5):
        client.put_object(Bucket="metrics-bucket", Key=f"k{i}", Body=b"m" * 1000,
                          ServerSideEncryption="AES256")
    with pytest.raises(ClientError):
        client.get_object(Bucket="metrics-bucket", Key="missing")
    assert _get(cluster, "/minio/v2/metrics/cluster")[0] == 403
    token = (cluster.root / "prometheus.token").read_text().strip()
    deadline = time.monotonic() + 15  # until nodes restarted by another test answer again
    while True:
        status, headers, text = _get(cluster, "/minio/v2/metrics/cluster",
                                     {"Authorization": f"Bearer {token}"})
        if 'nodes_online{set="0"} 6.0' in text or time.monotonic() > deadline:
            break
        time.sleep(0.3)
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert 'tessera_s3_requests_total{api="PutObject",status="200"} 5.0' in text
    assert 'tessera_s3_requests_total{api="GetObject",status="404"} 1.0' in text
    assert 'tessera_s3_received_bytes_total{api="PutObject"} 5000.0' in text
    assert 'tessera_cluster_nodes_online{set="0"} 6.0' in text
    assert 'tessera_cluster_write_quorum{set="0"} 4.0' in text
    assert "tessera_heal_backlog " in text and "tessera_scanner_cycles_total" in text
    calls = float(re.search(r"^tessera_kms_calls_total (\S+)$", text, re.M).group(1))
    assert calls >= 5  # one data key per SSE-S3 object
    kes = cluster.record("kes-1").address
    assert f'tessera_kms_endpoint_reachable{{endpoint="https://{kes}"}} 1.0' in text
    assert f'tessera_kms_endpoint_up{{endpoint="https://{kes}"}} 1.0' in text


def test_cluster_status_is_one_screen_of_what_matters(cluster: Cluster) -> None:
    done = subprocess.run([sys.executable, "-m", "cluster", "--root", str(cluster.root),
                           "status"], capture_output=True, text=True, timeout=60, cwd=ROOT,
                          check=False)
    out = done.stdout
    assert done.returncode == 0, out + done.stderr
    assert len(out.splitlines()) <= 40
    for name in cluster.names():
        assert re.search(rf"^{name}\s+\w+\s+127\.0\.0\.1:\d+\s+\d+\s+running\s", out, re.M), name
    assert re.search(r"^node-1\s+[\d.]+ \w?i?B\s+[\d.]+ \w+", out, re.M)  # used, free
    assert re.search(r"^0\s+6/6\s+ok\s+ok", out, re.M)
    assert "KES 1/1 reachable" in out
    assert re.search(r"gateway-1: backlog \d+ \(in flight \d+, dead letters \d+\)", out)


def test_logs_name_every_request_and_never_a_secret(cluster: Cluster) -> None:
    secret = cluster.credentials[1]
    signatures: set[str] = set()
    request_ids: list[str] = []

    def capture(request, **_):
        header = request.headers.get("Authorization", b"")
        text = header.decode() if isinstance(header, bytes) else header
        found = re.search(r"Signature=([0-9a-f]{64})", text)
        if found:
            signatures.add(found.group(1))

    def remember(http_response, **_):
        request_ids.append(http_response.headers.get("x-amz-request-id", ""))

    plain, secure = _client(cluster), _client(cluster, https=True)
    for client in (plain, secure):
        client.meta.events.register("before-send.s3", capture)
        client.meta.events.register("after-call.s3", remember)
    key = os.urandom(32)
    customer = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key}
    plain.create_bucket(Bucket="secret-logs")
    plain.put_object(Bucket="secret-logs", Key="plain", Body=b"p" * 3000)
    secure.put_object(Bucket="secret-logs", Key="customer", Body=b"c" * 3000, **customer)
    assert secure.get_object(Bucket="secret-logs", Key="customer", **customer)["Body"].read()
    with pytest.raises(ClientError):  # a wrong customer key is refused, and logged
        secure.get_object(Bucket="secret-logs", Key="customer",
                          SSECustomerAlgorithm="AES256", SSECustomerKey=os.urandom(32))
    upload = secure.create_multipart_upload(Bucket="secret-logs", Key="parts", **customer)
    part = secure.upload_part(Bucket="secret-logs", Key="parts", UploadId=upload["UploadId"],
                              PartNumber=1, Body=b"u" * 6000, **customer)
    secure.complete_multipart_upload(
        Bucket="secret-logs", Key="parts", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    url = plain.generate_presigned_url("get_object", {"Bucket": "secret-logs", "Key": "plain"})
    presigned = re.search(r"X-Amz-Signature=([0-9a-f]{64})", url).group(1)
    with urllib.request.urlopen(url, timeout=15) as reply:
        assert reply.read() == b"p" * 3000
    signatures.add(presigned)

    forbidden = {
        "secret key": secret,
        "SSE-C key (base64)": base64.b64encode(key).decode(),
        "SSE-C key (hex)": key.hex(),
        "SSE-C key MD5": base64.b64encode(hashlib.md5(key).digest()).decode(),
        "KES client key": _pem_body(Path(cluster.meta["kes_client_key"])),
        **{f"signature {s[:8]}": s for s in signatures},
    }
    assert len(signatures) >= 8
    # a request's access line is written just after its response went out: wait for the last
    deadline = time.monotonic() + 5
    while True:
        logs = {p.name: p.read_text(errors="replace") for p in (cluster.root / "logs").glob("*")}
        access_lines = [line for line in logs["gateway-1.log"].splitlines()
                        if "tessera.gateway.access" in line]
        if any("query=X-Amz-Algorithm," in line for line in access_lines) \
                or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    leaks = [f"{what} in {name}" for what, value in forbidden.items()
             for name, text in logs.items() if value and value in text]
    assert leaks == []
    for request_id in filter(None, request_ids):
        assert any(f"id={request_id} " in line for line in access_lines), request_id
    for api in ("PutObject", "GetObject", "CreateMultipartUpload", "UploadPart",
                "CompleteMultipartUpload"):
        assert any(f"api={api} " in line for line in access_lines), api
    assert any("query=X-Amz-Algorithm,X-Amz-Credential," in line for line in access_lines)


def _pem_body(path: Path) -> str:
    lines = [line for line in path.read_text().splitlines() if not line.startswith("-----")]
    return lines[1] if len(lines) > 1 else ""
