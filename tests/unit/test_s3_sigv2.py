"""SigV2 (boto3's default presigner for us-east-1, older tools): botocore's HmacV1 signers
produce the reference signatures; the gateway must accept them and refuse any change."""

from __future__ import annotations

from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.auth import HmacV1Auth, HmacV1QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.s3.errors import S3Error
from gateway.s3.request import _decode_query
from gateway.s3.sigv4 import verify_request

ACCESS, SECRET = "AKIDEXAMPLE", "v2-secret-example"
SECRETS = {ACCESS: SECRET}
NOW = 1_772_600_000.0


def _verify(prepared, now: float = NOW, vhost_bucket: str | None = None):
    parts = urlsplit(prepared.url)
    headers = [(k.lower(), v) for k, v in prepared.headers.items()]
    headers.append(("host", parts.netloc))
    return verify_request(prepared.method, parts.path.encode(),
                          _decode_query(parts.query.encode()), headers, SECRETS, "us-east-1",
                          now=now, vhost_bucket=vhost_bucket)


def _header_signed(method: str, url: str, headers: dict[str, str] | None = None):
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}))
    with mock.patch("botocore.auth.formatdate", return_value="Wed, 04 Mar 2026 04:53:20 GMT"):
        HmacV1Auth(Credentials(ACCESS, SECRET)).add_auth(request)
    return request.prepare()


def _presigned(method: str, url: str, expires: int = 600):
    request = AWSRequest(method=method, url=url)
    with mock.patch("botocore.auth.time.time", return_value=NOW):
        HmacV1QueryAuth(Credentials(ACCESS, SECRET), expires=expires).add_auth(request)
    return request.prepare()


@pytest.mark.parametrize("url", [
    "http://h:9000/bucket/key", "http://h:9000/bucket/dir/a%20b.txt", "http://h:9000/",
    "http://h:9000/bucket?uploads", "http://h:9000/bucket/k?uploadId=xyz&partNumber=2",
    "http://h:9000/bucket?list-type=2&prefix=a"])
def test_header_v2(url):
    prepared = _header_signed("PUT", url, {"Content-Type": "text/plain",
                                           "x-amz-meta-color": "blue"})
    ctx = _verify(prepared, NOW)
    assert ctx.access_key == ACCESS
    assert ctx.payload_hash == "UNSIGNED-PAYLOAD"


def test_header_v2_tampered_and_skewed():
    prepared = _header_signed("GET", "http://h:9000/bucket/key")
    prepared.url = "http://h:9000/bucket/other"
    with pytest.raises(S3Error) as exc:
        _verify(prepared)
    assert exc.value.code == "SignatureDoesNotMatch"
    prepared = _header_signed("GET", "http://h:9000/bucket/key")
    with pytest.raises(S3Error) as exc:
        _verify(prepared, NOW + 3600)
    assert exc.value.code == "RequestTimeTooSkewed"


def test_presigned_v2_and_expiry():
    prepared = _presigned("GET", "http://h:9000/bucket/key?response-content-type=text%2Fplain")
    assert _verify(prepared).presigned
    with pytest.raises(S3Error) as exc:
        _verify(prepared, NOW + 601)
    assert "expired" in exc.value.message
    prepared.url = prepared.url.replace("bucket/key", "bucket/kez")
    with pytest.raises(S3Error) as exc:
        _verify(prepared)
    assert exc.value.code == "SignatureDoesNotMatch"


def test_v2_virtual_host_resource_names_the_bucket():
    request = AWSRequest(method="GET", url="http://bkt.s3.test:9000/key")
    request.auth_path = "/bkt/key"
    with mock.patch("botocore.auth.formatdate", return_value="Wed, 04 Mar 2026 04:53:20 GMT"):
        HmacV1Auth(Credentials(ACCESS, SECRET)).add_auth(request)
    _verify(request.prepare(), vhost_bucket="bkt")
