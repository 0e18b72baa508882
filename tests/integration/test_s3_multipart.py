"""Multipart uploads through boto3 and the aws cli: several parts, the md5-of-md5s ETag,
ListParts, ListMultipartUploads, Abort, UploadPartCopy with ranges, and every Complete error."""

from __future__ import annotations

import hashlib
import os
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.integration.s3_gateway import S3Endpoint, raw_request, s3, signed_headers

__all__ = ["s3"]

MIB = 1024 * 1024


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


@pytest.fixture(scope="module")
def client(s3: S3Endpoint):
    return s3.client()


@pytest.fixture(scope="module")
def bucket(client) -> str:
    name = f"multipart-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    return name


@pytest.fixture(scope="module")
def parts() -> list[bytes]:
    return [os.urandom(5 * MIB), os.urandom(5 * MIB), os.urandom(1 * MIB + 17)]


def _multipart_etag(parts: list[bytes]) -> str:
    digests = b"".join(hashlib.md5(p).digest() for p in parts)
    return f'"{hashlib.md5(digests).hexdigest()}-{len(parts)}"'


def test_three_parts_round_trip(client, bucket, parts):
    upload = client.create_multipart_upload(Bucket=bucket, Key="mp/object",
                                            ContentType="video/x", Metadata={"k": "v"})
    upload_id = upload["UploadId"]
    etags = []
    for number, data in enumerate(parts, start=1):
        result = client.upload_part(Bucket=bucket, Key="mp/object", UploadId=upload_id,
                                    PartNumber=number, Body=data)
        assert result["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
        etags.append(result["ETag"])
    listed = client.list_parts(Bucket=bucket, Key="mp/object", UploadId=upload_id)
    assert [p["PartNumber"] for p in listed["Parts"]] == [1, 2, 3]
    assert [p["Size"] for p in listed["Parts"]] == [len(p) for p in parts]
    uploads = client.list_multipart_uploads(Bucket=bucket, Prefix="mp/")
    assert [u["UploadId"] for u in uploads["Uploads"]] == [upload_id]
    done = client.complete_multipart_upload(
        Bucket=bucket, Key="mp/object", UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": i + 1, "ETag": e}
                                   for i, e in enumerate(etags)]})
    assert done["ETag"] == _multipart_etag(parts)
    assert done["Key"] == "mp/object"
    got = client.get_object(Bucket=bucket, Key="mp/object")
    body = got["Body"].read()
    assert hashlib.sha256(body).digest() == hashlib.sha256(b"".join(parts)).digest()
    assert got["ETag"] == _multipart_etag(parts)
    assert got["ContentType"] == "video/x"
    assert got["Metadata"] == {"k": "v"}
    # a range across the part boundary
    ranged = client.get_object(Bucket=bucket, Key="mp/object",
                               Range=f"bytes={5 * MIB - 10}-{5 * MIB + 9}")
    assert ranged["Body"].read() == b"".join(parts)[5 * MIB - 10: 5 * MIB + 10]
    # GET ?partNumber=2 returns exactly the second part
    part2 = client.get_object(Bucket=bucket, Key="mp/object", PartNumber=2)
    assert part2["Body"].read() == parts[1]
    assert part2["PartsCount"] == 3
    # the upload is gone after Complete
    assert not client.list_multipart_uploads(Bucket=bucket, Prefix="mp/").get("Uploads")
    with pytest.raises(ClientError) as exc:
        client.list_parts(Bucket=bucket, Key="mp/object", UploadId=upload_id)
    assert _code(exc) == ("NoSuchUpload", 404)


def _upload(client, bucket: str, key: str, datas: list[bytes]) -> tuple[str, list[str]]:
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    etags = [client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=i,
                                Body=d)["ETag"] for i, d in enumerate(datas, start=1)]
    return upload_id, etags


def _complete(client, bucket, key, upload_id, listed):
    return client.complete_multipart_upload(
        Bucket=bucket, Key=key, UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": n, "ETag": e} for n, e in listed]})


def test_complete_errors_leave_upload_usable(client, bucket, parts):
    upload_id, etags = _upload(client, bucket, "errs", parts[:2])
    with pytest.raises(ClientError) as exc:
        _complete(client, bucket, "errs", upload_id, [(1, etags[0]), (2, '"' + "0" * 32 + '"')])
    assert _code(exc) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as exc:
        _complete(client, bucket, "errs", upload_id, [(2, etags[1]), (1, etags[0])])
    assert _code(exc) == ("InvalidPartOrder", 400)
    with pytest.raises(ClientError) as exc:
        _complete(client, bucket, "errs", upload_id, [(1, etags[0]), (3, etags[1])])
    assert _code(exc) == ("InvalidPart", 400)
    with pytest.raises(ClientError) as exc:
        client.head_object(Bucket=bucket, Key="errs")
    assert _code(exc) == ("404", 404)
    done = _complete(client, bucket, "errs", upload_id, [(1, etags[0]), (2, etags[1])])
    assert done["ETag"] == _multipart_etag(parts[:2])


def test_entity_too_small(client, bucket):
    upload_id, etags = _upload(client, bucket, "small", [b"a" * 1024, b"b" * 1024])
    with pytest.raises(ClientError) as exc:
        _complete(client, bucket, "small", upload_id, list(enumerate(etags, start=1)))
    assert _code(exc) == ("EntityTooSmall", 400)
    # a single small part is fine: it is the last one
    done = _complete(client, bucket, "small", upload_id, [(1, etags[0])])
    assert done["ETag"] == _multipart_etag([b"a" * 1024])


def test_complete_malformed_xml(s3, client, bucket):
    upload_id, _ = _upload(client, bucket, "malformed", [b"x"])
    path = f"/{bucket}/malformed?uploadId={upload_id}"
    for body in (b"<CompleteMultipartUpload><Part>", b"<Other/>", b"",
                 b"<CompleteMultipartUpload></CompleteMultipartUpload>"):
        headers = signed_headers(s3, "POST", s3.url + path,
                                 payload_hash=hashlib.sha256(body).hexdigest(),
                                 headers={"Content-Length": str(len(body))})
        resp = raw_request(s3, "POST", path, headers=headers, body=body)
        assert resp.status == 400, body
        assert b"<Code>MalformedXML</Code>" in resp.body


def test_abort(client, bucket):
    upload_id, _ = _upload(client, bucket, "aborted", [b"x" * 100])
    client.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id)
    with pytest.raises(ClientError) as exc:
        client.upload_part(Bucket=bucket, Key="aborted", UploadId=upload_id, PartNumber=2,
                           Body=b"late")
    assert _code(exc) == ("NoSuchUpload", 404)
    # a repeated abort succeeds for a while, as S3's (a retry whose answer was lost)
    again = client.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId=upload_id)
    assert again["ResponseMetadata"]["HTTPStatusCode"] == 204
    with pytest.raises(ClientError) as exc:
        client.abort_multipart_upload(Bucket=bucket, Key="aborted", UploadId="never-existed")
    assert _code(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        client.head_object(Bucket=bucket, Key="aborted")
    assert _code(exc) == ("404", 404)


def test_unknown_upload_id(client, bucket):
    with pytest.raises(ClientError) as exc:
        client.upload_part(Bucket=bucket, Key="k", UploadId="nonexistent", PartNumber=1,
                           Body=b"x")
    assert _code(exc) == ("NoSuchUpload", 404)
    with pytest.raises(ClientError) as exc:
        _complete(client, bucket, "k", "nonexistent", [(1, '"abc"')])
    assert _code(exc) == ("NoSuchUpload", 404)


@pytest.mark.parametrize("number", [0, 10001, -1])
def test_bad_part_numbers(client, bucket, number):
    upload_id, _ = _upload(client, bucket, f"badnum{number}", [])
    with pytest.raises(ClientError) as exc:
        client.upload_part(Bucket=bucket, Key=f"badnum{number}", UploadId=upload_id,
                           PartNumber=number, Body=b"x")
    assert _code(exc) == ("InvalidArgument", 400)


def test_upload_part_copy_with_ranges(client, bucket, parts):
    source = parts[0] + parts[2]
    client.put_object(Bucket=bucket, Key="copy-source", Body=source)
    upload_id = client.create_multipart_upload(Bucket=bucket, Key="assembled")["UploadId"]
    first = client.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload_id,
                                    PartNumber=1, CopySource=f"{bucket}/copy-source",
                                    CopySourceRange=f"bytes=0-{5 * MIB - 1}")
    second = client.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload_id,
                                     PartNumber=2, CopySource=f"{bucket}/copy-source",
                                     CopySourceRange=f"bytes={5 * MIB}-{len(source) - 1}")
    with pytest.raises(ClientError) as exc:
        client.upload_part_copy(Bucket=bucket, Key="assembled", UploadId=upload_id,
                                PartNumber=3, CopySource=f"{bucket}/copy-source",
                                CopySourceRange=f"bytes=0-{len(source)}")
    assert _code(exc) == ("InvalidArgument", 400)
    done = _complete(client, bucket, "assembled", upload_id,
                     [(1, first["CopyPartResult"]["ETag"]),
                      (2, second["CopyPartResult"]["ETag"])])
    assert done["ETag"] == _multipart_etag([parts[0], parts[2]])
    assert client.get_object(Bucket=bucket, Key="assembled")["Body"].read() == source


def test_list_parts_pagination_and_uploads_listing(client, bucket):
    upload_id, _ = _upload(client, bucket, "pages/one", [b"p"] * 5)
    other, _ = _upload(client, bucket, "pages/two", [b"q"])
    first = client.list_parts(Bucket=bucket, Key="pages/one", UploadId=upload_id, MaxParts=2)
    assert [p["PartNumber"] for p in first["Parts"]] == [1, 2]
    assert first["IsTruncated"] is True
    rest = client.list_parts(Bucket=bucket, Key="pages/one", UploadId=upload_id,
                             PartNumberMarker=first["NextPartNumberMarker"])
    assert [p["PartNumber"] for p in rest["Parts"]] == [3, 4, 5]
    assert rest["IsTruncated"] is False
    page = client.list_multipart_uploads(Bucket=bucket, Prefix="pages/", MaxUploads=1)
    assert page["IsTruncated"] is True
    assert [u["Key"] for u in page["Uploads"]] == ["pages/one"]
    page2 = client.list_multipart_uploads(Bucket=bucket, Prefix="pages/",
                                          KeyMarker=page["NextKeyMarker"],
                                          UploadIdMarker=page["NextUploadIdMarker"])
    assert [u["UploadId"] for u in page2["Uploads"]] == [other]
    grouped = client.list_multipart_uploads(Bucket=bucket, Delimiter="/")
    assert {"Prefix": "pages/"} in grouped.get("CommonPrefixes", [])
    for key, uid in (("pages/one", upload_id), ("pages/two", other)):
        client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=uid)


def test_multipart_checksums_composite(s3, bucket, parts):
    client = s3.client(request_checksum_calculation="when_supported")
    key = "mp-checksum"
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key,
                                               ChecksumAlgorithm="CRC32")["UploadId"]
    listed = []
    for number, data in enumerate(parts[:2], start=1):
        result = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                    PartNumber=number, Body=data, ChecksumAlgorithm="CRC32")
        listed.append({"PartNumber": number, "ETag": result["ETag"],
                       "ChecksumCRC32": result["ChecksumCRC32"]})
    done = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                            MultipartUpload={"Parts": listed})
    assert done["ChecksumCRC32"].endswith("-2")
    head = client.head_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert head["ChecksumCRC32"] == done["ChecksumCRC32"]
    # boto3 skips validating composite checksums; the bytes must still be right
    body = client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")["Body"].read()
    assert body == parts[0] + parts[1]


def test_aws_cli_multipart_copy(s3, bucket, tmp_path):
    data = os.urandom(11 * MIB)
    source = tmp_path / "big.bin"
    source.write_bytes(data)
    s3.aws("s3", "cp", str(source), f"s3://{bucket}/cli/big.bin",
           env={"AWS_CONFIG_FILE": str(_cli_config(tmp_path))})
    target = tmp_path / "back.bin"
    s3.aws("s3", "cp", f"s3://{bucket}/cli/big.bin", str(target),
           env={"AWS_CONFIG_FILE": str(_cli_config(tmp_path))})
    assert target.read_bytes() == data
    head = s3.client().head_object(Bucket=bucket, Key="cli/big.bin")
    assert head["ETag"].endswith('-3"')


def _cli_config(tmp_path):
    path = tmp_path / "aws-config"
    path.write_text("[default]\ns3 =\n  multipart_threshold = 5MB\n  multipart_chunksize = 5MB\n")
    return path


def test_multipart_checksums_full_object(s3, bucket, parts):
    import base64
    import zlib

    client = s3.client(request_checksum_calculation="when_supported")
    key = "mp-full-object"
    upload_id = client.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="CRC32",
                                               ChecksumType="FULL_OBJECT")["UploadId"]
    listed = []
    for number, data in enumerate(parts, start=1):
        result = client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id,
                                    PartNumber=number, Body=data, ChecksumAlgorithm="CRC32")
        listed.append({"PartNumber": number, "ETag": result["ETag"],
                       "ChecksumCRC32": result["ChecksumCRC32"]})
    whole = base64.b64encode(zlib.crc32(b"".join(parts)).to_bytes(4, "big")).decode()
    with pytest.raises(ClientError) as exc:
        client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                         MultipartUpload={"Parts": listed},
                                         ChecksumCRC32="AAAAAA==", ChecksumType="FULL_OBJECT")
    assert exc.value.response["Error"]["Code"] == "BadDigest"
    done = client.complete_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id,
                                            MultipartUpload={"Parts": listed},
                                            ChecksumCRC32=whole, ChecksumType="FULL_OBJECT")
    assert done["ChecksumCRC32"] == whole
    got = client.get_object(Bucket=bucket, Key=key, ChecksumMode="ENABLED")
    assert got["ChecksumCRC32"] == whole
    assert got["Body"].read() == b"".join(parts)  # boto3 validates the full-object CRC
