"""Objects through boto3 against a real gateway process: PUT/GET/HEAD/DELETE, metadata, ranges,
conditional requests, response overrides, Content-MD5, checksums, CopyObject, DeleteObjects."""

from __future__ import annotations

import base64
import hashlib
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError

from tests.integration.s3_gateway import S3Endpoint, raw_request, s3, signed_headers

__all__ = ["s3"]


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def client(s3: S3Endpoint):
    return s3.client()


@pytest.fixture(scope="module")
def bucket(client) -> str:
    name = f"objects-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    return name


def test_put_get_head_delete_round_trip(client, bucket):
    data = bytes(range(256)) * 1000
    put = client.put_object(Bucket=bucket, Key="dir/blob.bin", Body=data)
    assert put["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
    assert put["ResponseMetadata"]["HTTPHeaders"]["x-amz-request-id"]
    got = client.get_object(Bucket=bucket, Key="dir/blob.bin")
    assert got["Body"].read() == data
    assert got["ContentLength"] == len(data)
    assert got["ETag"] == put["ETag"]
    assert got["AcceptRanges"] == "bytes"
    assert got["LastModified"] > datetime.now(tz=UTC) - timedelta(minutes=5)
    head = client.head_object(Bucket=bucket, Key="dir/blob.bin")
    assert head["ContentLength"] == len(data)
    assert head["ETag"] == put["ETag"]
    client.delete_object(Bucket=bucket, Key="dir/blob.bin")
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="dir/blob.bin")
    assert _code(exc) == ("NoSuchKey", 404)
    with pytest.raises(ClientError) as exc:
        client.head_object(Bucket=bucket, Key="dir/blob.bin")
    assert _code(exc) == ("404", 404)
    # deleting a missing key succeeds, as S3
    client.delete_object(Bucket=bucket, Key="dir/blob.bin")


def test_empty_object_and_overwrite(client, bucket):
    client.put_object(Bucket=bucket, Key="empty", Body=b"")
    got = client.get_object(Bucket=bucket, Key="empty")
    assert got["Body"].read() == b""
    assert got["ETag"] == f'"{hashlib.md5(b"").hexdigest()}"'
    client.put_object(Bucket=bucket, Key="empty", Body=b"now full")
    assert client.get_object(Bucket=bucket, Key="empty")["Body"].read() == b"now full"


def test_metadata_and_content_headers_round_trip(client, bucket):
    expires = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    client.put_object(Bucket=bucket, Key="meta", Body=b"x", ContentType="text/csv",
                      ContentEncoding="identity", ContentDisposition="attachment; a.csv",
                      ContentLanguage="fr", CacheControl="max-age=60", Expires=expires,
                      Metadata={"Color": "Blue", "size-class": "small"})
    head = client.head_object(Bucket=bucket, Key="meta")
    assert head["ContentType"] == "text/csv"
    assert head["ContentEncoding"] == "identity"
    assert head["ContentDisposition"] == "attachment; a.csv"
    assert head["ContentLanguage"] == "fr"
    assert head["CacheControl"] == "max-age=60"
    assert head["Expires"] == expires
    # names come back lower-case, values as sent
    assert head["Metadata"] == {"color": "Blue", "size-class": "small"}


def test_default_content_type(client, bucket):
    client.put_object(Bucket=bucket, Key="plain", Body=b"x")
    assert client.head_object(Bucket=bucket, Key="plain")["ContentType"] in (
        "binary/octet-stream", "application/octet-stream")


@pytest.mark.parametrize(("header", "start", "end"), [
    ("bytes=0-9", 0, 9),
    ("bytes=90-", 90, 99),
    ("bytes=-5", 95, 99),
    ("bytes=95-200", 95, 99),
    ("bytes=-500", 0, 99),
    ("bytes=42-42", 42, 42),
])
def test_ranges(client, bucket, header, start, end):
    data = bytes(range(100))
    client.put_object(Bucket=bucket, Key="hundred", Body=data)
    got = client.get_object(Bucket=bucket, Key="hundred", Range=header)
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 206
    assert got["Body"].read() == data[start:end + 1]
    assert got["ContentLength"] == end - start + 1
    assert got["ContentRange"] == f"bytes {start}-{end}/100"


def test_unsatisfiable_range_is_416(client, bucket):
    client.put_object(Bucket=bucket, Key="small", Body=b"abc")
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="small", Range="bytes=3-")
    assert _code(exc) == ("InvalidRange", 416)
    assert exc.value.response["ResponseMetadata"]["HTTPHeaders"]["content-range"] == "bytes */3"


def test_unparsable_range_serves_whole_object(client, bucket):
    client.put_object(Bucket=bucket, Key="whole", Body=b"abcdef")
    got = client.get_object(Bucket=bucket, Key="whole", Range="bytes=4-2")
    assert got["ResponseMetadata"]["HTTPStatusCode"] == 200
    assert got["Body"].read() == b"abcdef"


def test_conditional_get(client, bucket):
    put = client.put_object(Bucket=bucket, Key="cond", Body=b"v1")
    etag = put["ETag"]
    modified = client.head_object(Bucket=bucket, Key="cond")["LastModified"]
    assert client.get_object(Bucket=bucket, Key="cond", IfMatch=etag)["Body"].read() == b"v1"
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="cond", IfMatch='"0000"')
    assert _code(exc) == ("PreconditionFailed", 412)
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="cond", IfNoneMatch=etag)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="cond", IfModifiedSince=modified)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 304
    earlier = modified - timedelta(hours=1)
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="cond", IfUnmodifiedSince=earlier)
    assert _code(exc) == ("PreconditionFailed", 412)
    # If-Match true wins over a false If-Unmodified-Since (S3's precedence)
    got = client.get_object(Bucket=bucket, Key="cond", IfMatch=etag, IfUnmodifiedSince=earlier)
    assert got["Body"].read() == b"v1"
    # If-None-Match false (no match) -> If-Modified-Since is not consulted
    got = client.get_object(Bucket=bucket, Key="cond", IfNoneMatch='"other"',
                            IfModifiedSince=modified)
    assert got["Body"].read() == b"v1"
    with pytest.raises(ClientError) as exc:
        client.head_object(Bucket=bucket, Key="cond", IfMatch='"nope"')
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 412


def test_response_overrides(client, bucket):
    client.put_object(Bucket=bucket, Key="override", Body=b"x", ContentType="text/plain")
    got = client.get_object(Bucket=bucket, Key="override",
                            ResponseContentType="application/json",
                            ResponseContentDisposition="attachment; filename=x.json",
                            ResponseCacheControl="no-cache", ResponseContentLanguage="de",
                            ResponseContentEncoding="gzip")
    assert got["ContentType"] == "application/json"
    assert got["ContentDisposition"] == "attachment; filename=x.json"
    assert got["CacheControl"] == "no-cache"
    assert got["ContentLanguage"] == "de"
    assert got["ContentEncoding"] == "gzip"


def test_content_md5_verified(client, bucket):
    data = b"digest me"
    good = base64.b64encode(hashlib.md5(data).digest()).decode()
    client.put_object(Bucket=bucket, Key="md5", Body=data, ContentMD5=good)
    wrong = base64.b64encode(hashlib.md5(b"other").digest()).decode()
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=bucket, Key="md5", Body=b"replaced", ContentMD5=wrong)
    assert _code(exc) == ("BadDigest", 400)
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=bucket, Key="md5", Body=b"replaced", ContentMD5="not-base64!")
    assert _code(exc) == ("InvalidDigest", 400)
    assert client.get_object(Bucket=bucket, Key="md5")["Body"].read() == data


@pytest.mark.parametrize("algorithm", ["CRC32", "CRC32C", "CRC64NVME", "SHA1", "SHA256"])
def test_checksums_stored_and_returned(s3, bucket, algorithm):
    client = s3.client(request_checksum_calculation="when_supported")
    data = b"checksummed " * 1000
    put = client.put_object(Bucket=bucket, Key=f"sum-{algorithm}", Body=data,
                            ChecksumAlgorithm=algorithm)
    value = put[f"Checksum{algorithm}"]
    got = client.get_object(Bucket=bucket, Key=f"sum-{algorithm}", ChecksumMode="ENABLED")
    assert got["Body"].read() == data
    assert got[f"Checksum{algorithm}"] == value
    head = client.head_object(Bucket=bucket, Key=f"sum-{algorithm}", ChecksumMode="ENABLED")
    assert head[f"Checksum{algorithm}"] == value
    plain = client.head_object(Bucket=bucket, Key=f"sum-{algorithm}")
    assert f"Checksum{algorithm}" not in plain
    ranged = client.get_object(Bucket=bucket, Key=f"sum-{algorithm}", Range="bytes=0-3",
                               ChecksumMode="ENABLED")
    assert f"Checksum{algorithm}" not in ranged
    assert ranged["Body"].read() == data[:4]


def test_wrong_checksum_header_is_bad_digest_and_stores_nothing(s3, client, bucket):
    data = b"payload"
    wrong = base64.b64encode(b"\x00\x00\x00\x01").decode()
    url = f"{s3.url}/{bucket}/badsum"
    headers = signed_headers(s3, "PUT", url, payload_hash=hashlib.sha256(data).hexdigest(),
                             headers={"x-amz-checksum-crc32": wrong,
                                      "Content-Length": str(len(data))})
    resp = raw_request(s3, "PUT", f"/{bucket}/badsum", headers=headers, body=data)
    assert resp.status == 400
    assert b"<Code>BadDigest</Code>" in resp.body
    with pytest.raises(ClientError) as exc:
        client.head_object(Bucket=bucket, Key="badsum")
    assert _code(exc) == ("404", 404)


def test_key_too_long(client, bucket):
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=bucket, Key="k" * 1025, Body=b"x")
    assert _code(exc) == ("KeyTooLongError", 400)
    client.put_object(Bucket=bucket, Key="k" * 1024, Body=b"x")


def test_unicode_and_special_keys(client, bucket):
    keys = ["ünïcödé/файл.txt", "spaces in name", "plus+sign", "percent%20literal",
            "a=b&c", "tilde~q?x#y"]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=key.encode())
    for key in keys:
        assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == key.encode()


def test_copy_object_copy_and_replace(client, bucket):
    client.put_object(Bucket=bucket, Key="src", Body=b"source bytes", ContentType="text/x",
                      Metadata={"origin": "a"})
    client.copy_object(Bucket=bucket, Key="dst", CopySource={"Bucket": bucket, "Key": "src"})
    head = client.head_object(Bucket=bucket, Key="dst")
    assert head["Metadata"] == {"origin": "a"}
    assert head["ContentType"] == "text/x"
    assert client.get_object(Bucket=bucket, Key="dst")["Body"].read() == b"source bytes"
    client.copy_object(Bucket=bucket, Key="dst2", CopySource=f"{bucket}/src",
                       MetadataDirective="REPLACE", Metadata={"new": "b"},
                       ContentType="text/y")
    head = client.head_object(Bucket=bucket, Key="dst2")
    assert head["Metadata"] == {"new": "b"}
    assert head["ContentType"] == "text/y"


def test_copy_onto_itself(client, bucket):
    client.put_object(Bucket=bucket, Key="self", Body=b"me", Metadata={"v": "1"})
    with pytest.raises(ClientError) as exc:
        client.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self")
    assert _code(exc) == ("InvalidRequest", 400)
    client.copy_object(Bucket=bucket, Key="self", CopySource=f"{bucket}/self",
                       MetadataDirective="REPLACE", Metadata={"v": "2"})
    got = client.get_object(Bucket=bucket, Key="self")
    assert got["Metadata"] == {"v": "2"}
    assert got["Body"].read() == b"me"


def test_copy_source_conditions(client, bucket):
    put = client.put_object(Bucket=bucket, Key="csrc", Body=b"c")
    client.copy_object(Bucket=bucket, Key="cdst", CopySource=f"{bucket}/csrc",
                       CopySourceIfMatch=put["ETag"])
    for kwargs in ({"CopySourceIfMatch": '"different"'},
                   {"CopySourceIfNoneMatch": put["ETag"]},
                   {"CopySourceIfModifiedSince": datetime.now(tz=UTC) + timedelta(hours=1)},
                   {"CopySourceIfUnmodifiedSince": datetime(2000, 1, 1, tzinfo=UTC)}):
        with pytest.raises(ClientError) as exc:
            client.copy_object(Bucket=bucket, Key="cdst2", CopySource=f"{bucket}/csrc",
                               **kwargs)
        assert _code(exc) == ("PreconditionFailed", 412), kwargs


def test_copy_missing_source(client, bucket):
    with pytest.raises(ClientError) as exc:
        client.copy_object(Bucket=bucket, Key="x", CopySource=f"{bucket}/does-not-exist")
    assert _code(exc) == ("NoSuchKey", 404)


@pytest.mark.parametrize("quiet", [False, True])
def test_delete_objects(client, bucket, quiet):
    keys = [f"batch-{quiet}/{i}" for i in range(5)]
    for key in keys:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    result = client.delete_objects(Bucket=bucket, Delete={
        "Objects": [{"Key": k} for k in [*keys, "never-existed"]], "Quiet": quiet})
    deleted = sorted(d["Key"] for d in result.get("Deleted", []))
    assert deleted == ([] if quiet else sorted([*keys, "never-existed"]))
    assert not result.get("Errors")
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"batch-{quiet}/")
    assert listed["KeyCount"] == 0


def test_delete_objects_requires_md5(s3, bucket):
    body = b"<Delete><Object><Key>a</Key></Object></Delete>"
    url = f"{s3.url}/{bucket}?delete"
    headers = signed_headers(s3, "POST", url, payload_hash=hashlib.sha256(body).hexdigest(),
                             headers={"Content-Length": str(len(body))})
    resp = raw_request(s3, "POST", f"/{bucket}?delete", headers=headers, body=body)
    assert resp.status == 400
    assert b"Content-MD5" in resp.body


def test_delete_objects_malformed_xml(s3, bucket):
    body = b"<Delete><Object><Key>a</Key></Object>"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    url = f"{s3.url}/{bucket}?delete"
    headers = signed_headers(s3, "POST", url, payload_hash=hashlib.sha256(body).hexdigest(),
                             headers={"Content-Length": str(len(body)), "Content-MD5": md5})
    resp = raw_request(s3, "POST", f"/{bucket}?delete", headers=headers, body=body)
    assert resp.status == 400
    assert b"<Code>MalformedXML</Code>" in resp.body


def test_entity_too_large_refused_before_body(s3, bucket):
    url = f"{s3.url}/{bucket}/huge"
    size = 5 * 1024**3 + 1
    headers = signed_headers(s3, "PUT", url, payload_hash="UNSIGNED-PAYLOAD",
                             headers={"Content-Length": str(size)})
    resp = raw_request(s3, "PUT", f"/{bucket}/huge", headers=headers, body=b"")
    assert resp.status == 400
    assert b"<Code>EntityTooLarge</Code>" in resp.body


def test_missing_content_length(s3, bucket):
    url = f"{s3.url}/{bucket}/nolength"
    headers = signed_headers(s3, "PUT", url, payload_hash="UNSIGNED-PAYLOAD")
    resp = raw_request(s3, "PUT", f"/{bucket}/nolength", headers=headers)
    assert resp.status == 411
    assert b"<Code>MissingContentLength</Code>" in resp.body


def test_no_such_bucket(client):
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket="no-such-bucket-here", Key="k", Body=b"x")
    assert _code(exc) == ("NoSuchBucket", 404)


def test_error_body_carries_request_id(s3, bucket):
    url = f"{s3.url}/{bucket}/absent"
    headers = signed_headers(s3, "GET", url, payload_hash=hashlib.sha256(b"").hexdigest())
    resp = raw_request(s3, "GET", f"/{bucket}/absent", headers=headers)
    assert resp.status == 404
    request_id = resp.headers["x-amz-request-id"]
    assert f"<RequestId>{request_id}</RequestId>".encode() in resp.body
    assert f"<Resource>/{bucket}/absent</Resource>".encode() in resp.body
    assert resp.headers["content-type"] == "application/xml"


def test_unsupported_write_features_are_refused_not_dropped(client, bucket):
    client.put_object(Bucket=bucket, Key="guarded", Body=b"original")
    for kwargs in ({"IfNoneMatch": "*"},
                   {"ObjectLockMode": "GOVERNANCE",
                    "ObjectLockRetainUntilDate": datetime(2030, 1, 1, tzinfo=UTC)}):
        with pytest.raises(ClientError) as exc:
            client.put_object(Bucket=bucket, Key="guarded", Body=b"overwrite", **kwargs)
        assert _code(exc) == ("NotImplemented", 501), kwargs
    assert client.get_object(Bucket=bucket, Key="guarded")["Body"].read() == b"original"
    with pytest.raises(ClientError) as exc:
        client.put_object(Bucket=bucket, Key="cold", Body=b"x", StorageClass="GLACIER")
    assert _code(exc) == ("InvalidStorageClass", 400)
    client.put_object(Bucket=bucket, Key="std", Body=b"x", StorageClass="STANDARD")
