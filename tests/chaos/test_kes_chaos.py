"""KES servers killed under SSE load through both gateways.

The chaos cluster's gateways run with TESSERA_KMS_DECRYPT_CACHE=off, so every SSE-S3 read
asks KES to unseal its data key and every write asks KES for a fresh one: these tests measure
the KES pool, not the gateways' cache of unsealed keys.

- killing servers one by one while one lives costs zero failed SSE requests;
- with all of them dead, SSE requests fail with a clear 503 while plain and SSE-C requests
  succeed, and readiness says why;
- a KES server started again serves SSE requests at once, without restarting any gateway.
"""

from __future__ import annotations

import os
import time

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from cluster.chaos import LoadSpec, load_for
from cluster.launcher import Cluster
from tests.chaos.support import gateway_metrics, print_report, wait_until

pytestmark = pytest.mark.chaos


def _client(cluster: Cluster, index: int = 0, *, https: bool = False, attempts: int = 1):
    access, secret = cluster.credentials
    return boto3.session.Session().client(
        "s3", endpoint_url=cluster.gateway_url(index, https=https), aws_access_key_id=access,
        aws_secret_access_key=secret, region_name="us-east-1",
        verify=str(cluster.ca_path) if https else None,
        config=Config(retries={"max_attempts": attempts, "mode": "standard"},
                      s3={"addressing_style": "path"}))


def _kes_totals(cluster: Cluster) -> dict[str, float]:
    totals: dict[str, float] = {}
    for gateway in cluster.by_role("gateway"):
        for name, value in gateway_metrics(cluster, gateway.address).items():
            if name in ("tessera_kms_calls_total", "tessera_kms_failovers_total",
                        "tessera_kms_unavailable_total"):
                totals[name] = totals.get(name, 0) + value
    return totals


def test_kes_servers_killed_one_by_one_fail_no_sse_request(cluster: Cluster) -> None:
    before = _kes_totals(cluster)
    load = load_for(cluster, LoadSpec(operations=260, concurrency=8, bucket="chaos-kes",
                                      keys=80, max_bytes=32 << 20, sse={"sse-s3": 1.0},
                                      seed=5))
    load.start()
    killed = []
    for at, name in ((65, "kes-1"), (140, "kes-2")):
        assert load.wait_progress(at, timeout=120)
        cluster.kill(name)
        killed.append(f"{name} after {load.done} ops")
    report = load.join()
    verify = load.verify_all("read back through kes-3 alone")
    after = _kes_totals(cluster)
    delta = {k.removeprefix("tessera_kms_").removesuffix("_total"): int(after[k] - before.get(k, 0))
             for k in after}
    print_report("SSE-S3 load while kes-1, kes-2 are killed", report, killed=", ".join(killed),
                 **{"KES calls (both gateways)": delta})
    print_report("verify with only kes-3", verify)
    assert report.failures == [] and report.clean
    assert verify.failures == [] and verify.clean and verify.objects_verified > 10
    assert delta["unavailable"] == 0 and delta["failovers"] > 0
    # every SSE-S3 write and read asked KES (no cache): at least one call per request
    assert delta["calls"] >= report.ops["put"].count + report.ops["get"].count


def test_all_kes_down_fails_sse_clearly_and_a_returning_server_serves_at_once(
        cluster: Cluster) -> None:
    plain, secure = _client(cluster), _client(cluster, 1, https=True)
    plain.create_bucket(Bucket="chaos-kms-outage")
    sealed = os.urandom(70_000)
    plain.put_object(Bucket="chaos-kms-outage", Key="sealed", Body=sealed,
                     ServerSideEncryption="AES256")
    gateway_pids = [g.pid for g in cluster.by_role("gateway")]
    for name in cluster.names("kes"):
        cluster.kill(name)

    start = time.monotonic()
    with pytest.raises(ClientError) as put_err:
        plain.put_object(Bucket="chaos-kms-outage", Key="new", Body=b"n" * 1000,
                         ServerSideEncryption="AES256")
    put_seconds = time.monotonic() - start
    with pytest.raises(ClientError) as get_err:
        plain.get_object(Bucket="chaos-kms-outage", Key="sealed")
    for err in (put_err, get_err):
        reply = err.value.response
        assert reply["ResponseMetadata"]["HTTPStatusCode"] == 503
        assert reply["Error"]["Code"] == "ServiceUnavailable"
        assert "KES" in reply["Error"]["Message"] or "KMS" in reply["Error"]["Message"]
    assert put_seconds < 10

    # requests that need no KES go on
    plain.put_object(Bucket="chaos-kms-outage", Key="plain", Body=b"p" * 5000)
    assert plain.get_object(Bucket="chaos-kms-outage", Key="plain")["Body"].read() == b"p" * 5000
    customer = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": os.urandom(32)}
    secure.put_object(Bucket="chaos-kms-outage", Key="customer", Body=b"c" * 5000, **customer)
    got = secure.get_object(Bucket="chaos-kms-outage", Key="customer", **customer)
    assert got["Body"].read() == b"c" * 5000

    ready = _status(cluster, "/minio/health/ready")
    assert ready[0] == 503 and "no KES endpoint answers" in ready[1]
    assert _status(cluster, "/minio/health/cluster")[0] == 200

    cluster.start("kes-2")
    back = wait_until(lambda: _sse_works(plain), timeout=20, interval=0.5)
    assert back is not None, "SSE requests still fail after kes-2 came back"
    assert plain.get_object(Bucket="chaos-kms-outage", Key="sealed")["Body"].read() == sealed
    assert [g.pid for g in cluster.by_role("gateway")] == gateway_pids
    assert wait_until(lambda: _status(cluster, "/minio/health/ready")[0] == 200, 10) is not None
    print(f"\nall KES down: SSE-S3 PUT refused in {put_seconds:.2f}s with "
          f"503 {put_err.value.response['Error']['Message']!r}; plain and SSE-C served; "
          f"ready said {ready[1]!r}; kes-2 restarted: SSE served again after {back:.1f}s, "
          "gateways not restarted")


def _sse_works(client) -> bool:
    try:
        client.put_object(Bucket="chaos-kms-outage", Key="again", Body=b"a" * 100,
                          ServerSideEncryption="AES256")
    except ClientError:
        return False
    return client.get_object(Bucket="chaos-kms-outage", Key="again")["Body"].read() == b"a" * 100


def _status(cluster: Cluster, path: str) -> tuple[int, str]:
    import http.client

    host, port = cluster.record("gateway-1").address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()
