"""PostObject (browser uploads) on a real cluster (6 nodes, a gateway, a KES server): forms from
boto3's generate_presigned_post and the minio SDK's presigned_post_policy, POSTed with httpx;
bytes round trip, policy refusals with S3's codes store nothing, SSE-S3 by form field, and a
20 MiB upload leaves the gateway's memory flat."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from botocore.exceptions import ClientError

from cluster.launcher import Cluster
from tests.conftest import running_cluster
from tests.integration.s3_gateway import S3Endpoint
from tests.integration.sse_helpers import endpoint

BUCKET = "forms"
MiB = 1 << 20


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("post"), nodes=6, gateways=1, kes=1) as c:
        yield c


@pytest.fixture(scope="module")
def s3(cluster: Cluster) -> S3Endpoint:
    return endpoint(cluster)


@pytest.fixture(scope="module")
def client(s3: S3Endpoint):
    """SigV4 forms (x-amz-signature); boto3's default for us-east-1 is still SigV2."""
    c = s3.client(signature_version="s3v4")
    c.create_bucket(Bucket=BUCKET)
    return c


def _post(s3: S3Endpoint, fields: dict, data: bytes | Iterator[bytes],
          filename: str = "cat.png") -> httpx.Response:
    files = {"file": (filename, data, "image/png")}
    with httpx.Client(timeout=60) as http:
        return http.post(f"{s3.url}/{BUCKET}", data=fields, files=files)


def _code(response: httpx.Response) -> str:
    text = response.text
    return text.split("<Code>", 1)[1].split("</Code>", 1)[0] if "<Code>" in text else ""


def _exists(client, key: str) -> bool:
    try:
        client.head_object(Bucket=BUCKET, Key=key)
    except ClientError as exc:
        assert exc.response["Error"]["Code"] in ("404", "NoSuchKey")
        return False
    return True


def test_round_trip_with_filename(s3: S3Endpoint, client) -> None:
    data = os.urandom(300_000)
    post = client.generate_presigned_post(
        BUCKET, "uploads/${filename}", Fields={"Content-Type": "image/png",
                                               "x-amz-meta-owner": "ann"},
        Conditions=[["starts-with", "$key", "uploads/"], {"Content-Type": "image/png"},
                    {"x-amz-meta-owner": "ann"}], ExpiresIn=600)
    response = _post(s3, post["fields"], data)
    assert response.status_code == 204, response.text
    assert response.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert response.headers["location"].endswith(f"/{BUCKET}/uploads/cat.png")
    got = client.get_object(Bucket=BUCKET, Key="uploads/cat.png")
    assert got["Body"].read() == data
    assert got["ContentType"] == "image/png"
    assert got["Metadata"] == {"owner": "ann"}
    v2 = s3.client(signature_version="s3").generate_presigned_post(BUCKET, "v2.txt")
    assert "signature" in v2["fields"] and "AWSAccessKeyId" in v2["fields"]
    assert _post(s3, v2["fields"], b"sigv2").status_code == 204
    signature = v2["fields"]["signature"]
    bad = dict(v2["fields"], signature=("B" if signature[0] == "A" else "A") + signature[1:])
    assert _code(_post(s3, bad, b"sigv2")) == "SignatureDoesNotMatch"
    assert client.get_object(Bucket=BUCKET, Key="v2.txt")["Body"].read() == b"sigv2"


def test_policy_refusals_store_nothing(s3: S3Endpoint, client) -> None:
    limited = client.generate_presigned_post(
        BUCKET, "refused/${filename}", Conditions=[["starts-with", "$key", "refused/"],
                                                  ["content-length-range", 1, 64 * 1024]],
        ExpiresIn=600)
    fields = limited["fields"]
    cases = {
        "prefix": (dict(fields, key="elsewhere/x"), 403, "AccessDenied"),
        "extra": ({**fields, "x-amz-meta-sneaky": "1"}, 403, "AccessDenied"),
        "signature": (dict(fields, **{"x-amz-signature": "0" * 64}), 403,
                      "SignatureDoesNotMatch"),
    }
    for name, (form, status, code) in cases.items():
        response = _post(s3, form, b"x" * 100)
        assert (response.status_code, _code(response)) == (status, code), name
    assert "Extra input fields" in _post(s3, cases["extra"][0], b"x").text
    too_big = _post(s3, fields, os.urandom(200_000))
    assert (too_big.status_code, _code(too_big)) == (400, "EntityTooLarge")
    expired = client.generate_presigned_post(BUCKET, "refused/late", ExpiresIn=1)
    time.sleep(1.5)
    response = _post(s3, expired["fields"], b"late")
    assert (response.status_code, _code(response)) == (403, "AccessDenied")
    assert "expired" in response.text
    listed = client.list_objects_v2(Bucket=BUCKET, Prefix="refused/").get("KeyCount", 0)
    assert listed == 0 and not _exists(client, "elsewhere/x")


def test_success_status_201_and_redirect(s3: S3Endpoint, client) -> None:
    post = client.generate_presigned_post(
        BUCKET, "status.txt", Fields={"success_action_status": "201"},
        Conditions=[{"success_action_status": "201"}], ExpiresIn=600)
    response = _post(s3, post["fields"], b"created")
    assert response.status_code == 201
    assert "<Key>status.txt</Key>" in response.text
    assert "<Bucket>forms</Bucket>" in response.text
    target = "https://app.invalid/uploaded"
    post = client.generate_presigned_post(
        BUCKET, "redirected.txt", Fields={"success_action_redirect": target},
        Conditions=[{"success_action_redirect": target}], ExpiresIn=600)
    response = _post(s3, post["fields"], b"moved")
    assert response.status_code == 303
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["bucket"] == [BUCKET] and query["key"] == ["redirected.txt"]
    assert query["etag"] == [f'"{hashlib.md5(b"moved").hexdigest()}"']
    assert client.get_object(Bucket=BUCKET, Key="redirected.txt")["Body"].read() == b"moved"


def test_sse_s3_by_form_field(s3: S3Endpoint, client) -> None:
    post = client.generate_presigned_post(
        BUCKET, "secret.bin", Fields={"x-amz-server-side-encryption": "AES256"},
        Conditions=[{"x-amz-server-side-encryption": "AES256"}], ExpiresIn=600)
    data = os.urandom(70_000)
    response = _post(s3, post["fields"], data)
    assert response.status_code == 204, response.text
    assert response.headers["x-amz-server-side-encryption"] == "AES256"
    assert client.head_object(Bucket=BUCKET, Key="secret.bin")["ServerSideEncryption"] == \
        "AES256"
    assert client.get_object(Bucket=BUCKET, Key="secret.bin")["Body"].read() == data


def test_minio_sdk_post_policy(s3: S3Endpoint, client) -> None:
    minio = pytest.importorskip("minio")
    from minio.datatypes import PostPolicy

    sdk = minio.Minio(urlsplit(s3.url).netloc, s3.access_key, s3.secret_key, secure=False,
                      region=s3.region)
    policy = PostPolicy(BUCKET, datetime.now(UTC) + timedelta(minutes=10))
    policy.add_starts_with_condition("key", "sdk/")
    policy.add_content_length_range_condition(1, MiB)
    fields = sdk.presigned_post_policy(policy)
    response = _post(s3, {**fields, "key": "sdk/from-minio.txt"}, b"hello from minio")
    assert response.status_code == 204, response.text
    assert client.get_object(Bucket=BUCKET, Key="sdk/from-minio.txt")["Body"].read() == \
        b"hello from minio"


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_twenty_mib_upload_streams(cluster: Cluster, s3: S3Endpoint, client) -> None:
    gateway = cluster.by_role("gateway")[0]
    block = os.urandom(MiB)
    post = client.generate_presigned_post(BUCKET, "big.bin", ExpiresIn=600)
    # warm the layer's pools and buffers with a PUT of the same size before the baseline
    client.put_object(Bucket=BUCKET, Key="warm.bin", Body=os.urandom(20 * MiB))
    Path(f"/proc/{gateway.pid}/clear_refs").write_text("5")  # the peak restarts from now
    baseline = _rss_kib(gateway.pid)
    digest = hashlib.sha256()

    def stream() -> Iterator[bytes]:
        for i in range(20):
            chunk = i.to_bytes(4, "little") + block[4:]
            digest.update(chunk)
            yield chunk

    response = _post(s3, post["fields"], b"".join(stream()))
    assert response.status_code == 204, response.text
    growth_mib = (_rss_kib(gateway.pid) - baseline) / 1024
    print(f"20 MiB PostObject: gateway peak RSS +{growth_mib:.1f} MiB")
    assert growth_mib < 50, f"gateway peak RSS grew by {growth_mib:.0f} MiB"
    got = client.get_object(Bucket=BUCKET, Key="big.bin")["Body"].read()
    assert hashlib.sha256(got).hexdigest() == digest.hexdigest()
