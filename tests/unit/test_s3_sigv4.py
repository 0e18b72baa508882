"""SigV4 verification against botocore's own signer (reference signatures), AWS's published
chunked-upload example, presigned URLs, expiry, clock skew and every rejection path."""

from __future__ import annotations

import calendar
import hashlib
from datetime import UTC, datetime
from unittest import mock
from urllib.parse import unquote, urlsplit

import pytest
from botocore.auth import S3SigV4Auth, S3SigV4QueryAuth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.s3.errors import S3Error
from gateway.s3.request import _decode_query
from gateway.s3.sigv4 import chunk_signature, verify_request

ACCESS, SECRET, REGION = "AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "us-east-1"
SECRETS = {ACCESS: SECRET}
NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
EMPTY = hashlib.sha256(b"").hexdigest()


def _sign(method: str, url: str, *, headers: dict[str, str] | None = None, body: bytes = b"",
          signer_cls=S3SigV4Auth, secret: str = SECRET, region: str = REGION,
          when: datetime = NOW, **kwargs):
    request = AWSRequest(method=method, url=url, headers=dict(headers or {}), data=body)
    signer = signer_cls(Credentials(ACCESS, secret), "s3", region, **kwargs)
    clock = when.replace(tzinfo=None)
    with mock.patch("botocore.auth.get_current_datetime", return_value=clock):
        signer.add_auth(request)
    return request.prepare()


def _verify(prepared, now: datetime = NOW):
    parts = urlsplit(prepared.url)
    headers = [(k.lower(), v) for k, v in prepared.headers.items()]
    if not any(k == "host" for k, _ in headers):
        headers.append(("host", parts.netloc))
    return verify_request(prepared.method, parts.path.encode(), _decode_query(parts.query.encode()),
                          headers, SECRETS, REGION, now=now.timestamp())


@pytest.mark.parametrize("path", [
    "/bucket/key", "/bucket/dir/sub/file.txt", "/bucket/with%20space", "/bucket/plus%2Bsign",
    "/bucket/%C3%BCml%C3%A4ut", "/bucket/a%3Db%26c", "/bucket/tilde~x", "/", "/bucket",
    "/bucket/double//slash"])
def test_header_signature_matches_botocore(path):
    prepared = _sign("GET", f"http://127.0.0.1:9000{path}")
    ctx = _verify(prepared)
    assert ctx.access_key == ACCESS
    assert ctx.seed_signature == prepared.headers["Authorization"].rsplit("=", 1)[1]


@pytest.mark.parametrize("query", [
    "list-type=2&prefix=a%2Fb&delimiter=%2F", "uploads", "uploadId=abc&partNumber=3",
    "prefix=space%20here&max-keys=10", "response-content-disposition=attachment%3B%20a.txt",
    "b=2&a=1&a=0"])
def test_query_canonicalisation_matches_botocore(query):
    prepared = _sign("GET", f"http://127.0.0.1:9000/bucket?{query}")
    _verify(prepared)


def test_signed_payload_and_extra_headers():
    body = b"hello"
    prepared = _sign("PUT", "http://127.0.0.1:9000/bucket/key", body=body,
                     headers={"Content-Type": "text/plain", "x-amz-meta-a": "  spaced   value ",
                              "Content-MD5": "XUFAKrxLKna5cZ2REBfFkg=="})
    ctx = _verify(prepared)
    assert ctx.payload_hash == hashlib.sha256(body).hexdigest()


def test_wrong_secret():
    prepared = _sign("GET", "http://127.0.0.1:9000/bucket", secret="wrong-secret")
    with pytest.raises(S3Error) as exc:
        _verify(prepared)
    assert exc.value.code == "SignatureDoesNotMatch"
    assert exc.value.status == 403


def test_unknown_key():
    prepared = _sign("GET", "http://127.0.0.1:9000/bucket")
    parts = urlsplit(prepared.url)
    headers = [(k.lower(), v) for k, v in prepared.headers.items()] + [("host", parts.netloc)]
    with pytest.raises(S3Error) as exc:
        verify_request("GET", b"/bucket", [], headers, {"OTHER": "x"}, REGION,
                       now=NOW.timestamp())
    assert exc.value.code == "InvalidAccessKeyId"


def test_tampering_is_detected():
    prepared = _sign("GET", "http://127.0.0.1:9000/bucket/key")
    parts = urlsplit(prepared.url)
    headers = [(k.lower(), v) for k, v in prepared.headers.items()] + [("host", parts.netloc)]
    with pytest.raises(S3Error) as exc:
        verify_request("GET", b"/bucket/other", [], headers, SECRETS, REGION,
                       now=NOW.timestamp())
    assert exc.value.code == "SignatureDoesNotMatch"
    with pytest.raises(S3Error):
        verify_request("PUT", b"/bucket/key", [], headers, SECRETS, REGION, now=NOW.timestamp())


@pytest.mark.parametrize(("offset", "ok"), [(-14 * 60, True), (14 * 60, True),
                                            (-16 * 60, False), (16 * 60, False)])
def test_clock_skew(offset, ok):
    prepared = _sign("GET", "http://127.0.0.1:9000/bucket")
    now = datetime.fromtimestamp(NOW.timestamp() + offset, tz=UTC)
    if ok:
        _verify(prepared, now)
    else:
        with pytest.raises(S3Error) as exc:
            _verify(prepared, now)
        assert exc.value.code == "RequestTimeTooSkewed"


def test_wrong_region_names_ours():
    prepared = _sign("GET", "http://127.0.0.1:9000/bucket", region="eu-west-1")
    with pytest.raises(S3Error) as exc:
        _verify(prepared)
    assert exc.value.code == "AuthorizationHeaderMalformed"
    assert exc.value.fields["Region"] == REGION


def test_missing_content_sha256_header():
    prepared = _sign("GET", "http://127.0.0.1:9000/bucket", signer_cls=SigV4Auth)
    parts = urlsplit(prepared.url)
    headers = [(k.lower(), v) for k, v in prepared.headers.items()
               if k.lower() != "x-amz-content-sha256"] + [("host", parts.netloc)]
    with pytest.raises(S3Error) as exc:
        verify_request("GET", b"/bucket", [], headers, SECRETS, REGION, now=NOW.timestamp())
    assert exc.value.code in ("InvalidRequest", "SignatureDoesNotMatch")


@pytest.mark.parametrize("authorization", [
    "AWS4-HMAC-SHA256 Credential=x", "AWS4-HMAC-SHA256 garbage", "Bearer token",
    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/2026/us-east-1/s3/aws4_request, "
    "SignedHeaders=host, Signature=abcd"])
def test_malformed_authorization(authorization):
    headers = [("authorization", authorization), ("host", "h"), ("x-amz-date", "20260304T050607Z"),
               ("x-amz-content-sha256", EMPTY)]
    with pytest.raises(S3Error) as exc:
        verify_request("GET", b"/", [], headers, SECRETS, REGION, now=NOW.timestamp())
    assert exc.value.status in (400, 403)


def test_signature_v2_with_a_bad_signature():
    headers = [("authorization", "AWS AKIDEXAMPLE:c2lnbmF0dXJl"), ("host", "h"),
               ("date", "Wed, 04 Mar 2026 05:06:07 GMT")]
    with pytest.raises(S3Error) as exc:
        verify_request("GET", b"/", [], headers, SECRETS, REGION, now=NOW.timestamp())
    assert exc.value.code == "SignatureDoesNotMatch"


def test_anonymous_is_access_denied():
    with pytest.raises(S3Error) as exc:
        verify_request("GET", b"/", [], [("host", "h")], SECRETS, REGION, now=NOW.timestamp())
    assert exc.value.code == "AccessDenied"


# ---- presigned ----


def _presign(url: str, expires: int, when: datetime = NOW, method: str = "GET"):
    return _sign(method, url, signer_cls=S3SigV4QueryAuth, expires=expires, when=when)


def test_presigned_url_verifies():
    prepared = _presign("http://127.0.0.1:9000/bucket/key?response-content-type=text%2Fplain",
                        3600)
    ctx = _verify(prepared)
    assert ctx.presigned
    assert ctx.payload_hash == "UNSIGNED-PAYLOAD"


def test_presigned_url_expires():
    prepared = _presign("http://127.0.0.1:9000/bucket/key", 60)
    _verify(prepared, datetime.fromtimestamp(NOW.timestamp() + 59, tz=UTC))
    with pytest.raises(S3Error) as exc:
        _verify(prepared, datetime.fromtimestamp(NOW.timestamp() + 61, tz=UTC))
    assert exc.value.code == "AccessDenied"
    assert "expired" in exc.value.message


def test_presigned_max_expiry_is_a_week():
    _verify(_presign("http://127.0.0.1:9000/bucket/key", 604800))
    with pytest.raises(S3Error) as exc:
        _verify(_presign("http://127.0.0.1:9000/bucket/key", 604801))
    assert exc.value.code == "AuthorizationQueryParametersError"


def test_presigned_from_the_future():
    prepared = _presign("http://127.0.0.1:9000/bucket/key", 3600)
    with pytest.raises(S3Error) as exc:
        _verify(prepared, datetime.fromtimestamp(NOW.timestamp() - 3600, tz=UTC))
    assert "not valid yet" in exc.value.message


def test_presigned_tampered_query():
    prepared = _presign("http://127.0.0.1:9000/bucket/key", 3600)
    prepared.url = prepared.url.replace("X-Amz-Expires=3600", "X-Amz-Expires=3601")
    with pytest.raises(S3Error) as exc:
        _verify(prepared)
    assert exc.value.code == "SignatureDoesNotMatch"


def test_presigned_missing_parameter():
    prepared = _presign("http://127.0.0.1:9000/bucket/key", 3600)
    url = "&".join(p for p in prepared.url.split("&") if not p.startswith("X-Amz-Date"))
    prepared.url = url
    with pytest.raises(S3Error) as exc:
        _verify(prepared)
    assert exc.value.code == "AuthorizationQueryParametersError"


# ---- AWS's published streaming example (SigV4 "Example Calculations", chunked upload) ----

AWS_EXAMPLE_SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
AWS_EXAMPLE_HEADERS = [
    ("host", "s3.amazonaws.com"),
    ("x-amz-date", "20130524T000000Z"),
    ("x-amz-storage-class", "REDUCED_REDUNDANCY"),
    ("authorization", "AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20130524/us-east-1/s3/"
                      "aws4_request,SignedHeaders=content-encoding;content-length;host;"
                      "x-amz-content-sha256;x-amz-date;x-amz-decoded-content-length;"
                      "x-amz-storage-class,Signature=4f232c4386841ef735655705268965c44a0e4690"
                      "baa4adea153f7db9fa80a0a9"),
    ("x-amz-content-sha256", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"),
    ("content-encoding", "aws-chunked"),
    ("x-amz-decoded-content-length", "66560"),
    ("content-length", "66824"),
]


def aws_example_context():
    now = calendar.timegm((2013, 5, 24, 0, 0, 1))
    return verify_request("PUT", b"/examplebucket/chunkObject.txt", [], AWS_EXAMPLE_HEADERS,
                          {"AKIAIOSFODNN7EXAMPLE": AWS_EXAMPLE_SECRET}, "us-east-1", now=now)


def test_aws_streaming_example_seed_and_chunks():
    ctx = aws_example_context()
    assert ctx.seed_signature == ("4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80"
                                  "a0a9")
    first = chunk_signature(ctx, ctx.seed_signature, hashlib.sha256(b"a" * 65536).hexdigest())
    assert first == "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
    second = chunk_signature(ctx, first, hashlib.sha256(b"a" * 1024).hexdigest())
    assert second == "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
    final = chunk_signature(ctx, second, EMPTY)
    assert final == "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"


def test_decode_query_keeps_plus_literal():
    assert _decode_query(b"prefix=a+b&x=%2B") == [("prefix", "a+b"), ("x", "+")]
    assert unquote("%2F") == "/"
