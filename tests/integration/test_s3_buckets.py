"""Buckets, health, addressing and unsupported operations against a real gateway process."""

from __future__ import annotations

import hashlib
import http.client
import uuid
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.integration.s3_gateway import (
    DOMAIN,
    S3Endpoint,
    raw_request,
    s3,
    signed_headers,
)

__all__ = ["s3"]

EMPTY = hashlib.sha256(b"").hexdigest()


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def client(s3: S3Endpoint):
    return s3.client()


def _name(prefix: str = "bkt") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def test_bucket_lifecycle(client):
    name = _name()
    client.create_bucket(Bucket=name)
    assert name in [b["Name"] for b in client.list_buckets()["Buckets"]]
    head = client.head_bucket(Bucket=name)
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-bucket-region"] == "us-east-1"
    with pytest.raises(ClientError) as exc:
        client.create_bucket(Bucket=name)
    assert _code(exc) == ("BucketAlreadyOwnedByYou", 409)
    client.put_object(Bucket=name, Key="k", Body=b"x")
    with pytest.raises(ClientError) as exc:
        client.delete_bucket(Bucket=name)
    assert _code(exc) == ("BucketNotEmpty", 409)
    client.delete_object(Bucket=name, Key="k")
    client.delete_bucket(Bucket=name)
    with pytest.raises(ClientError) as exc:
        client.head_bucket(Bucket=name)
    assert _code(exc) == ("404", 404)
    with pytest.raises(ClientError) as exc:
        client.delete_bucket(Bucket=name)
    assert _code(exc) == ("NoSuchBucket", 404)


def test_create_bucket_with_location(client):
    name = _name()
    client.create_bucket(Bucket=name, CreateBucketConfiguration={
        "LocationConstraint": "us-east-1"})  # type: ignore[typeddict-item]
    assert client.get_bucket_location(Bucket=name)["LocationConstraint"] is None
    with pytest.raises(ClientError) as exc:
        client.create_bucket(Bucket=_name(), CreateBucketConfiguration={
            "LocationConstraint": "eu-west-1"})
    assert _code(exc) == ("InvalidLocationConstraint", 400)


@pytest.mark.parametrize("name", [
    "ab", "a" * 64, "UpperCase", "under_score", "-leading", "trailing-", "two..dots",
    "192.168.1.1", "xn--punycode", "dot-.hyphen", "ends-s3alias"])
def test_invalid_bucket_names(s3, name):
    # botocore validates some names itself; send raw so the gateway decides every one
    path = f"/{name}"
    headers = signed_headers(s3, "PUT", s3.url + path, payload_hash=EMPTY,
                             headers={"Content-Length": "0"})
    resp = raw_request(s3, "PUT", path, headers=headers)
    assert resp.status == 400, resp.body
    assert b"<Code>InvalidBucketName</Code>" in resp.body


def test_valid_bucket_name_shapes(client):
    for name in (f"a.b-{uuid.uuid4().hex[:6]}", f"{uuid.uuid4().hex[:3]}", "0" * 63):
        client.create_bucket(Bucket=name)
        client.head_bucket(Bucket=name)


def test_get_bucket_versioning_is_empty(client):
    name = _name()
    client.create_bucket(Bucket=name)
    versioning = client.get_bucket_versioning(Bucket=name)
    assert "Status" not in versioning


def test_bucket_acl_reports_owner(client):
    name = _name()
    client.create_bucket(Bucket=name)
    acl = client.get_bucket_acl(Bucket=name)
    assert acl["Grants"][0]["Permission"] == "FULL_CONTROL"


@pytest.mark.parametrize(("method", "query"), [
    ("GET", "policy"), ("PUT", "policy"),
    ("GET", "lifecycle"), ("PUT", "versioning"), ("PUT", "acl"), ("GET", "cors"),
    ("DELETE", "cors"), ("GET", "website"), ("GET", "object-lock"), ("GET", "replication"),
    ("GET", "notification"), ("GET", "logging"),
    ("PUT", "encryption")])  # 501 without a KMS (Get/Delete: tests/integration/test_sse_*)
def test_unsupported_bucket_subresources_are_501(s3, client, method, query):
    name = _name("sub")
    client.create_bucket(Bucket=name)
    path = f"/{name}?{query}"
    headers = signed_headers(s3, method, f"{s3.url}{path}", payload_hash=EMPTY,
                             headers={"Content-Length": "0"})
    resp = raw_request(s3, method, path, headers=headers)
    assert resp.status == 501, (method, query, resp.body)
    assert b"<Code>NotImplemented</Code>" in resp.body
    assert resp.headers["x-amz-request-id"].encode() in resp.body


@pytest.mark.parametrize(("method", "query"), [
    ("PUT", "acl"), ("GET", "retention"),
    ("GET", "legal-hold"), ("POST", "restore"), ("GET", "attributes")])
def test_unsupported_object_subresources_are_501(s3, client, method, query):
    name = _name("osub")
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="obj", Body=b"x")
    path = f"/{name}/obj?{query}"
    headers = signed_headers(s3, method, f"{s3.url}{path}", payload_hash=EMPTY,
                             headers={"Content-Length": "0"})
    resp = raw_request(s3, method, path, headers=headers)
    assert resp.status == 501, (method, query, resp.body)
    assert b"<Code>NotImplemented</Code>" in resp.body
    assert client.get_object(Bucket=name, Key="obj")["Body"].read() == b"x"


def test_method_not_allowed(s3):
    headers = signed_headers(s3, "POST", f"{s3.url}/", payload_hash=EMPTY,
                             headers={"Content-Length": "0"})
    resp = raw_request(s3, "POST", "/", headers=headers)
    assert resp.status == 405
    assert b"<Code>MethodNotAllowed</Code>" in resp.body


@pytest.mark.parametrize("path", ["/minio/health/live", "/minio/health/ready",
                                  "/minio/health/cluster"])
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_health_is_unauthenticated(s3, path, method):
    host = urlsplit(s3.url).netloc
    resp = raw_request(s3, method, path, headers={"Host": host})
    assert resp.status == 200
    assert resp.headers["x-amz-request-id"]


def test_virtual_host_style(s3, client):
    name = _name("vhost")
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="in/vhost.txt", Body=b"virtual")
    port = urlsplit(s3.url).port
    url = f"http://{name}.{DOMAIN}:{port}/in/vhost.txt"
    headers = signed_headers(s3, "GET", url, payload_hash=EMPTY)
    resp = raw_request(s3, "GET", "/in/vhost.txt", headers=headers)
    assert resp.status == 200, resp.body
    assert resp.body == b"virtual"
    # listing the bucket through its virtual host lists its content, not the buckets
    url = f"http://{name}.{DOMAIN}:{port}/?list-type=2"
    headers = signed_headers(s3, "GET", url, payload_hash=EMPTY)
    resp = raw_request(s3, "GET", "/?list-type=2", headers=headers)
    assert resp.status == 200
    assert b"<Key>in/vhost.txt</Key>" in resp.body


def test_https_listener(s3):
    client = s3.client(https=True)
    name = _name("tls")
    client.create_bucket(Bucket=name)
    client.put_object(Bucket=name, Key="secure", Body=b"over tls")
    assert client.get_object(Bucket=name, Key="secure")["Body"].read() == b"over tls"


def test_aws_cli_bucket_and_object_commands(s3, tmp_path):
    name = _name("cli")
    s3.aws("s3", "mb", f"s3://{name}")
    source = tmp_path / "hello.txt"
    source.write_text("hello from the aws cli\n")
    s3.aws("s3", "cp", str(source), f"s3://{name}/docs/hello.txt")
    listing = s3.aws("s3", "ls", f"s3://{name}/docs/").stdout
    assert "hello.txt" in listing
    target = tmp_path / "back.txt"
    s3.aws("s3", "cp", f"s3://{name}/docs/hello.txt", str(target), https=True)
    assert target.read_text() == "hello from the aws cli\n"
    out = s3.aws("s3api", "head-object", "--bucket", name, "--key", "docs/hello.txt").stdout
    assert hashlib.md5(source.read_bytes()).hexdigest() in out
    s3.aws("s3", "rm", f"s3://{name}/docs/hello.txt")
    s3.aws("s3", "rb", f"s3://{name}")
    missing = s3.aws("s3api", "head-bucket", "--bucket", name, check=False)
    assert missing.returncode != 0
    assert "404" in missing.stderr


def test_keep_alive_after_errors(s3):
    """An error answered before the body was read must not poison the connection."""
    parts = urlsplit(s3.url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        for _ in range(3):
            conn.request("PUT", "/nobucket-x/key", body=b"x" * 1000,
                         headers={"Host": parts.netloc})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 403
            assert b"<Code>AccessDenied</Code>" in body
            if resp.getheader("connection") == "close":
                conn.close()
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    finally:
        conn.close()
