"""Authentication and payload modes against a real gateway process: SigV4 header and presigned
auth (expiry, skew, wrong secret, unknown key), every payload mode boto3 sends over HTTP and
HTTPS, hand-built signed-chunk and trailer bodies, and bodies that must store nothing (bad
digests, truncation, a client that disconnects mid-body)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import socket
import time
import urllib.request
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from unittest import mock
from urllib.parse import urlsplit

import pytest
from botocore.exceptions import ClientError

from tests.integration.s3_gateway import S3Endpoint, raw_request, s3, signed_headers

__all__ = ["s3"]

EMPTY = hashlib.sha256(b"").hexdigest()
SEEN_MODES: set[str] = set()


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def client(s3: S3Endpoint):
    return s3.client(signature_version="s3v4")


@pytest.fixture(scope="module")
def bucket(client) -> str:
    name = f"auth-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    return name


def _absent(client, bucket: str, key: str) -> bool:
    try:
        client.head_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        return exc.response["ResponseMetadata"]["HTTPStatusCode"] == 404
    return False


# ---- header auth ----


def test_wrong_secret_is_signature_mismatch(s3, bucket):
    bad = s3.client(secret="not-the-secret-at-all")
    with pytest.raises(ClientError) as exc:
        bad.list_objects_v2(Bucket=bucket)
    assert _code(exc) == ("SignatureDoesNotMatch", 403)
    with pytest.raises(ClientError) as exc:
        bad.put_object(Bucket=bucket, Key="intruder", Body=b"x")
    assert _code(exc) == ("SignatureDoesNotMatch", 403)
    assert _absent(s3.client(), bucket, "intruder")


def test_unknown_access_key(s3, bucket):
    import boto3
    from botocore.config import Config

    other = boto3.session.Session().client(
        "s3", endpoint_url=s3.url, aws_access_key_id="NOBODY", aws_secret_access_key="x" * 20,
        region_name="us-east-1", config=Config(retries={"max_attempts": 1}))
    with pytest.raises(ClientError) as exc:
        other.list_buckets()
    assert _code(exc) == ("InvalidAccessKeyId", 403)


def test_missing_auth_is_access_denied(s3, bucket):
    host = urlsplit(s3.url).netloc
    resp = raw_request(s3, "GET", f"/{bucket}?list-type=2", headers={"Host": host})
    assert resp.status == 403
    assert b"<Code>AccessDenied</Code>" in resp.body


def test_clock_skew(s3, bucket):
    path = f"/{bucket}?list-type=2"
    headers = signed_headers(s3, "GET", s3.url + path, payload_hash=EMPTY,
                             when=time.time() - 20 * 60)
    resp = raw_request(s3, "GET", path, headers=headers)
    assert resp.status == 403
    assert b"<Code>RequestTimeTooSkewed</Code>" in resp.body
    headers = signed_headers(s3, "GET", s3.url + path, payload_hash=EMPTY,
                             when=time.time() - 10 * 60)
    assert raw_request(s3, "GET", path, headers=headers).status == 200


def test_wrong_region(s3, bucket):
    import dataclasses

    elsewhere = dataclasses.replace(s3, region="eu-central-1")
    path = f"/{bucket}?list-type=2"
    headers = signed_headers(elsewhere, "GET", s3.url + path, payload_hash=EMPTY)
    resp = raw_request(s3, "GET", path, headers=headers)
    assert resp.status == 400
    assert b"<Code>AuthorizationHeaderMalformed</Code>" in resp.body
    assert b"<Region>us-east-1</Region>" in resp.body
    # botocore reads <Region> and re-signs for the right one, as it does with AWS
    other = elsewhere.client()
    assert other.list_objects_v2(Bucket=bucket)["KeyCount"] >= 0


def test_tampered_header_breaks_signature(s3, bucket):
    path = f"/{bucket}/tampered"
    body = b"original"
    headers = signed_headers(s3, "PUT", s3.url + path,
                             payload_hash=hashlib.sha256(body).hexdigest(),
                             headers={"Content-Length": str(len(body)), "x-amz-meta-a": "1"})
    headers["x-amz-meta-a"] = "2"
    resp = raw_request(s3, "PUT", path, headers=headers, body=body)
    assert resp.status == 403
    assert b"<Code>SignatureDoesNotMatch</Code>" in resp.body


# ---- presigned URLs ----


def _fetch(url: str, method: str = "GET", data: bytes | None = None,
           https_ca: str | None = None) -> tuple[int, bytes, dict]:
    import ssl

    context = ssl.create_default_context(cafile=https_ca) if https_ca else None
    request = urllib.request.Request(url, method=method, data=data)
    try:
        with urllib.request.urlopen(request, timeout=10, context=context) as resp:
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as err:
        return err.code, err.read(), {k.lower(): v for k, v in err.headers.items()}


@pytest.mark.parametrize("https", [False, True])
@pytest.mark.parametrize("version", ["s3v4", None])  # None: boto3's default (SigV2 here)
def test_presigned_get_and_put(s3, bucket, https, version):
    client = s3.client(https=https, **({"signature_version": version} if version else {}))
    key = f"presigned-{https}-{version}"
    put_url = client.generate_presigned_url("put_object", Params={"Bucket": bucket, "Key": key},
                                            ExpiresIn=300)
    assert ("X-Amz-Signature=" in put_url) == (version == "s3v4")
    ca = str(s3.ca) if https else None
    parts = urlsplit(put_url)
    resp = raw_request(s3, "PUT", f"{parts.path}?{parts.query}", https=https,
                       headers={"Host": parts.netloc, "Content-Length": "17"},
                       body=b"via presigned put")
    assert resp.status == 200, resp.body
    get_url = client.generate_presigned_url(
        "get_object", ExpiresIn=300,
        Params={"Bucket": bucket, "Key": key,
                "ResponseContentDisposition": "attachment; filename=x.txt"})
    status, body, headers = _fetch(get_url, https_ca=ca)
    assert status == 200
    assert body == b"via presigned put"
    assert headers["content-disposition"] == "attachment; filename=x.txt"
    tampered = get_url.replace(key, key + "x")
    status, body, _ = _fetch(tampered, https_ca=ca)
    assert status == 403
    assert b"SignatureDoesNotMatch" in body


def test_presigned_expired(s3, client, bucket):
    client.put_object(Bucket=bucket, Key="old", Body=b"x")
    past = datetime.now(tz=UTC) - timedelta(hours=2)

    def two_hours_ago(remove_tzinfo: bool = True) -> datetime:
        return past.replace(tzinfo=None) if remove_tzinfo else past

    # botocore signs with the AWS CRT when awscrt is installed: patch both signers' clocks
    with mock.patch("botocore.auth.get_current_datetime", two_hours_ago), \
            mock.patch("botocore.crt.auth.get_current_datetime", two_hours_ago):
        url = client.generate_presigned_url("get_object", Params={"Bucket": bucket,
                                                                  "Key": "old"}, ExpiresIn=60)
    assert "X-Amz-Date=" + past.strftime("%Y%m%dT%H") in url
    status, body, _ = _fetch(url)
    assert status == 403
    assert b"<Code>AccessDenied</Code>" in body
    assert b"expired" in body


def test_presigned_expiry_over_a_week(client, bucket):
    url = client.generate_presigned_url("get_object", Params={"Bucket": bucket, "Key": "old"},
                                        ExpiresIn=8 * 24 * 3600)
    status, body, _ = _fetch(url)
    assert status == 400
    assert b"AuthorizationQueryParametersError" in body


# ---- payload modes boto3 sends ----


def _recording_client(endpoint: S3Endpoint, **config):
    client = endpoint.client(**config)
    modes: list[str] = []

    def record(request, **_kwargs):
        modes.append(request.headers.get("x-amz-content-sha256", b"").decode()
                     if isinstance(request.headers.get("x-amz-content-sha256"), bytes)
                     else request.headers.get("x-amz-content-sha256", ""))

    client.meta.events.register("before-send.s3.PutObject", record)
    client.meta.events.register("before-send.s3.UploadPart", record)
    return client, modes


CONFIGS = {
    "default": {},
    "when_required": {"request_checksum_calculation": "when_required"},
    "s3v4": {"signature_version": "s3v4"},
    "unsigned": {"s3": {"addressing_style": "path", "payload_signing_enabled": False}},
    "signed": {"s3": {"addressing_style": "path", "payload_signing_enabled": True},
               "request_checksum_calculation": "when_required"},
}


@pytest.mark.parametrize("https", [False, True])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_boto3_payload_modes(s3, bucket, name, https):
    client, modes = _recording_client(s3, https=https, **CONFIGS[name])
    data = b"payload mode " * 5000
    key = f"mode-{name}-{https}"
    client.put_object(Bucket=bucket, Key=key, Body=data)
    client.upload_fileobj(__import__("io").BytesIO(data), bucket, key + "-fileobj")
    for k in (key, key + "-fileobj"):
        assert s3.client().get_object(Bucket=bucket, Key=k)["Body"].read() == data
    assert modes
    SEEN_MODES.update(m if not m or len(m) != 64 else "<sha256>" for m in modes)


def test_boto3_modes_cover_the_expected_set():
    """Runs after the parametrized cases above (pytest keeps file order)."""
    assert {"<sha256>", "UNSIGNED-PAYLOAD", "STREAMING-UNSIGNED-PAYLOAD-TRAILER"} <= SEEN_MODES


# ---- hand-built aws-chunked bodies ----


def _signing_key(secret: str, date: str, region: str) -> bytes:
    key = ("AWS4" + secret).encode()
    for part in (date, region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


def _chunked(s3: S3Endpoint, path: str, data: bytes, *, mode: str, chunk: int = 65536,
             trailer: tuple[str, str] | None = None, break_chunk: int | None = None,
             break_trailer: bool = False,
             truncate: int | None = None) -> tuple[dict[str, str], bytes]:
    """Headers and body of an aws-chunked PUT, chunk and trailer signatures computed here
    from the AWS specification (independently of the gateway's code)."""
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    signed = mode.startswith("STREAMING-AWS4-HMAC-SHA256")
    # the encoded length is needed before signing: compute the body with dummy signatures
    sig_len = len(";chunk-signature=") + 64 if signed else 0

    def encoded_length() -> int:
        total = sum(len(f"{len(p):x}") + sig_len + 2 + len(p) + 2 for p in pieces[:-1])
        total += len("0") + sig_len + 2
        if trailer:
            total += len(f"{trailer[0]}:{trailer[1]}\r\n")
            if signed:
                total += len("x-amz-trailer-signature:") + 64 + 2
        return total + 2

    length = encoded_length() if truncate is None else truncate
    headers = {"Content-Encoding": "aws-chunked", "x-amz-decoded-content-length": str(len(data)),
               "Content-Length": str(length)}
    if trailer:
        headers["x-amz-trailer"] = trailer[0]
    headers = signed_headers(s3, "PUT", s3.url + path, payload_hash=mode, headers=headers)
    seed = headers["Authorization"].rsplit("Signature=", 1)[1]
    amz_date = headers["X-Amz-Date"]
    scope = f"{amz_date[:8]}/{s3.region}/s3/aws4_request"
    key = _signing_key(s3.secret_key, amz_date[:8], s3.region)
    out = []
    previous = seed
    for index, piece in enumerate(pieces):
        if signed:
            text = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, previous, EMPTY,
                              hashlib.sha256(piece).hexdigest()])
            signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
            previous = signature
            if index == break_chunk:
                signature = "0" * 64
            out.append(f"{len(piece):x};chunk-signature={signature}\r\n".encode())
        else:
            out.append(f"{len(piece):x}\r\n".encode())
        if piece:
            out.append(piece + b"\r\n")
    if trailer:
        line = f"{trailer[0]}:{trailer[1]}"
        out.append(line.encode() + b"\r\n")
        if signed:
            text = "\n".join(["AWS4-HMAC-SHA256-TRAILER", amz_date, scope, previous,
                              hashlib.sha256((line + "\n").encode()).hexdigest()])
            signature = hmac.new(key, text.encode(), hashlib.sha256).hexdigest()
            if break_trailer:
                signature = "f" * 64
            out.append(f"x-amz-trailer-signature:{signature}\r\n".encode())
    out.append(b"\r\n")
    body = b"".join(out)[:length]
    assert len(body) == length
    return headers, body


def _crc32_b64(data: bytes) -> str:
    return base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("https", [False, True])
def test_signed_chunks(s3, client, bucket, https):
    data = bytes(range(256)) * 1100  # 4+ chunks of 64 KiB
    path = f"/{bucket}/signed-chunks-{https}"
    headers, body = _chunked(s3, path, data, mode="STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    resp = raw_request(s3, "PUT", path, headers=headers, body=body, https=https)
    assert resp.status == 200, resp.body
    assert resp.headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert client.get_object(Bucket=bucket, Key=path.split("/", 2)[2])["Body"].read() == data


def test_signed_chunks_with_a_bad_signature_store_nothing(s3, client, bucket):
    data = b"z" * 200_000
    for broken in (0, 2, 3):  # first, middle, final (empty) chunk
        path = f"/{bucket}/bad-chunk-{broken}"
        headers, body = _chunked(s3, path, data, mode="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                                 break_chunk=broken)
        resp = raw_request(s3, "PUT", path, headers=headers, body=body)
        assert resp.status == 403, (broken, resp.body)
        assert b"<Code>SignatureDoesNotMatch</Code>" in resp.body
        assert _absent(client, bucket, f"bad-chunk-{broken}")


@pytest.mark.parametrize("https", [False, True])
def test_signed_chunks_with_signed_trailer(s3, client, bucket, https):
    data = b"trailer body " * 10000
    path = f"/{bucket}/signed-trailer-{https}"
    headers, body = _chunked(s3, path, data, mode="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                             trailer=("x-amz-checksum-crc32", _crc32_b64(data)))
    resp = raw_request(s3, "PUT", path, headers=headers, body=body, https=https)
    assert resp.status == 200, resp.body
    assert resp.headers["x-amz-checksum-crc32"] == _crc32_b64(data)
    got = client.get_object(Bucket=bucket, Key=path.split("/", 2)[2], ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got["ChecksumCRC32"] == _crc32_b64(data)


def test_bad_trailer_signature_or_checksum_store_nothing(s3, client, bucket):
    data = b"q" * 70000
    path = f"/{bucket}/bad-trailer-sig"
    headers, body = _chunked(s3, path, data, mode="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                             trailer=("x-amz-checksum-crc32", _crc32_b64(data)),
                             break_trailer=True)
    resp = raw_request(s3, "PUT", path, headers=headers, body=body)
    assert resp.status == 403
    assert _absent(client, bucket, "bad-trailer-sig")
    path = f"/{bucket}/bad-trailer-sum"
    headers, body = _chunked(s3, path, data, mode="STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
                             trailer=("x-amz-checksum-crc32", _crc32_b64(b"other")))
    resp = raw_request(s3, "PUT", path, headers=headers, body=body)
    assert resp.status == 400
    assert b"<Code>BadDigest</Code>" in resp.body
    assert _absent(client, bucket, "bad-trailer-sum")


def test_unsigned_trailer_sha256(s3, client, bucket):
    data = b"unsigned trailer " * 5000
    good = base64.b64encode(hashlib.sha256(data).digest()).decode()
    path = f"/{bucket}/unsigned-trailer"
    headers, body = _chunked(s3, path, data, mode="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                             trailer=("x-amz-checksum-sha256", good), chunk=10000)
    resp = raw_request(s3, "PUT", path, headers=headers, body=body)
    assert resp.status == 200, resp.body
    assert client.get_object(Bucket=bucket, Key="unsigned-trailer")["Body"].read() == data
    bad = base64.b64encode(hashlib.sha256(b"nope").digest()).decode()
    path = f"/{bucket}/unsigned-trailer-bad"
    headers, body = _chunked(s3, path, data, mode="STREAMING-UNSIGNED-PAYLOAD-TRAILER",
                             trailer=("x-amz-checksum-sha256", bad))
    resp = raw_request(s3, "PUT", path, headers=headers, body=body)
    assert resp.status == 400
    assert b"<Code>BadDigest</Code>" in resp.body
    assert _absent(client, bucket, "unsigned-trailer-bad")


def test_truncated_chunked_body_stores_nothing(s3, client, bucket):
    data = b"t" * 150_000
    path = f"/{bucket}/truncated-chunks"
    for cut in (75_000, 150_000 + 300, 150_000 + 320):  # mid-data, in the last header, ...
        headers, body = _chunked(s3, path, data, mode="STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                                 truncate=cut)
        resp = raw_request(s3, "PUT", path, headers=headers, body=body)
        assert resp.status == 400, (cut, resp.body)
        assert b"<Code>IncompleteBody</Code>" in resp.body
        assert _absent(client, bucket, "truncated-chunks")


def test_signed_payload_mismatch_stores_nothing(s3, client, bucket):
    path = f"/{bucket}/sha-mismatch"
    headers = signed_headers(s3, "PUT", s3.url + path,
                             payload_hash=hashlib.sha256(b"declared").hexdigest(),
                             headers={"Content-Length": "6"})
    resp = raw_request(s3, "PUT", path, headers=headers, body=b"actual")
    assert resp.status == 400
    assert b"<Code>XAmzContentSHA256Mismatch</Code>" in resp.body
    assert _absent(client, bucket, "sha-mismatch")


# ---- a client that goes away ----


def _put_and_vanish(s3: S3Endpoint, path: str, total: int, sent: int) -> None:
    headers = signed_headers(s3, "PUT", s3.url + path, payload_hash="UNSIGNED-PAYLOAD",
                             headers={"Content-Length": str(total)})
    parts = urlsplit(s3.url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as sock:
        head = f"PUT {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(head.encode() + b"\r\n" + b"d" * sent)
        time.sleep(0.2)


def test_disconnect_mid_body_stores_nothing(s3, client, bucket):
    _put_and_vanish(s3, f"/{bucket}/vanished", 4 * 1024 * 1024, 1024 * 1024)
    client.put_object(Bucket=bucket, Key="kept", Body=b"old content")
    _put_and_vanish(s3, f"/{bucket}/kept", 4 * 1024 * 1024, 512 * 1024)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        assert _absent(client, bucket, "vanished")
        assert client.get_object(Bucket=bucket, Key="kept")["Body"].read() == b"old content"
        time.sleep(0.5)
    listed = client.list_objects_v2(Bucket=bucket, Prefix="vanished")
    assert listed["KeyCount"] == 0
