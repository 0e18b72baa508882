"""Object and bucket tagging through boto3 and the aws cli against a real gateway: the
?tagging operations, x-amz-tagging on PutObject / multipart / CopyObject, x-amz-tagging-count,
S3's limits (nothing changes when refused), and tags on an SSE-C object (its bytes stay
readable: a tag change rewrites metadata only)."""

from __future__ import annotations

import hashlib
import json
import os
import uuid

import pytest
from botocore.exceptions import ClientError

from tests.integration.s3_gateway import S3Endpoint, raw_request, s3, signed_headers

__all__ = ["s3"]

MiB = 1024 * 1024


def _code(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    err = exc.value.response
    return err["Error"]["Code"], err["ResponseMetadata"]["HTTPStatusCode"]


def _tag_set(tags: dict[str, str]) -> dict:
    return {"TagSet": [{"Key": k, "Value": v} for k, v in tags.items()]}


def _tags(client, bucket: str, key: str, **kw) -> dict[str, str]:
    got = client.get_object_tagging(Bucket=bucket, Key=key, **kw)
    return {t["Key"]: t["Value"] for t in got["TagSet"]}


@pytest.fixture(scope="module")
def client(s3: S3Endpoint):
    return s3.client()


@pytest.fixture(scope="module")
def bucket(client) -> str:
    name = f"tagging-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    return name


def test_object_tagging_round_trip(client, bucket):
    put = client.put_object(Bucket=bucket, Key="doc.txt", Body=b"hello tags")
    assert _tags(client, bucket, "doc.txt") == {}
    assert "TagCount" not in client.head_object(Bucket=bucket, Key="doc.txt")
    before = client.head_object(Bucket=bucket, Key="doc.txt")["LastModified"]
    client.put_object_tagging(Bucket=bucket, Key="doc.txt",
                              Tagging=_tag_set({"team": "search", "cost centre": "42 / ü"}))
    assert _tags(client, bucket, "doc.txt") == {"cost centre": "42 / ü", "team": "search"}
    head = client.head_object(Bucket=bucket, Key="doc.txt")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "2"
    assert head["ETag"] == put["ETag"] and head["LastModified"] == before
    got = client.get_object(Bucket=bucket, Key="doc.txt")
    assert got["TagCount"] == 2 and got["Body"].read() == b"hello tags"
    # a new set replaces the old; versionId "null" names the only version
    client.put_object_tagging(Bucket=bucket, Key="doc.txt", VersionId="null",
                              Tagging=_tag_set({"only": ""}))
    assert _tags(client, bucket, "doc.txt") == {"only": ""}
    deleted = client.delete_object_tagging(Bucket=bucket, Key="doc.txt")
    assert deleted["ResponseMetadata"]["HTTPStatusCode"] == 204
    assert _tags(client, bucket, "doc.txt") == {}
    assert "TagCount" not in client.get_object(Bucket=bucket, Key="doc.txt")
    assert client.get_object(Bucket=bucket, Key="doc.txt")["Body"].read() == b"hello tags"


def test_tagging_a_missing_or_deleted_key_is_no_such_key(client, bucket):
    client.put_object(Bucket=bucket, Key="gone", Body=b"x")
    client.delete_object(Bucket=bucket, Key="gone")
    for key in ("gone", "never-was"):
        for call, kw in ((client.get_object_tagging, {}),
                         (client.put_object_tagging, {"Tagging": _tag_set({"a": "b"})}),
                         (client.delete_object_tagging, {})):
            with pytest.raises(ClientError) as exc:
                call(Bucket=bucket, Key=key, **kw)
            assert _code(exc) == ("NoSuchKey", 404), (key, call)
    with pytest.raises(ClientError) as exc:
        client.get_object_tagging(Bucket=f"{bucket}-absent", Key="k")
    assert _code(exc) == ("NoSuchBucket", 404)


def test_put_object_header_and_multipart(client, bucket):
    client.put_object(Bucket=bucket, Key="tagged", Body=b"x", Tagging="a=1&b=two%20words&flag")
    assert _tags(client, bucket, "tagged") == {"a": "1", "b": "two words", "flag": ""}
    upload = client.create_multipart_upload(Bucket=bucket, Key="mp", Tagging="stage=raw")
    first, last = os.urandom(5 * MiB), b"tail"
    parts = []
    for number, data in ((1, first), (2, last)):
        part = client.upload_part(Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
                                  PartNumber=number, Body=data)
        parts.append({"PartNumber": number, "ETag": part["ETag"]})
    assert _code_of(lambda: client.get_object_tagging(Bucket=bucket, Key="mp")) == (
        "NoSuchKey", 404)  # the upload's tags appear only with the object
    client.complete_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"],
                                     MultipartUpload={"Parts": parts})
    assert _tags(client, bucket, "mp") == {"stage": "raw"}
    head = client.head_object(Bucket=bucket, Key="mp")
    assert head["ResponseMetadata"]["HTTPHeaders"]["x-amz-tagging-count"] == "1"
    client.put_object_tagging(Bucket=bucket, Key="mp", Tagging=_tag_set({"stage": "done"}))
    assert client.get_object(Bucket=bucket, Key="mp")["Body"].read() == first + last
    assert client.head_object(Bucket=bucket, Key="mp")["ETag"] == head["ETag"]


def _code_of(call) -> tuple[str, int]:
    with pytest.raises(ClientError) as exc:
        call()
    return _code(exc)


def test_copy_object_tagging_directive(client, bucket):
    client.put_object(Bucket=bucket, Key="src", Body=b"source bytes", Tagging="origin=src&n=1")
    source = {"Bucket": bucket, "Key": "src"}
    client.copy_object(Bucket=bucket, Key="copied", CopySource=source)
    assert _tags(client, bucket, "copied") == {"n": "1", "origin": "src"}
    client.copy_object(Bucket=bucket, Key="copied-explicit", CopySource=source,
                       TaggingDirective="COPY", Tagging="ignored=yes")
    assert _tags(client, bucket, "copied-explicit") == {"n": "1", "origin": "src"}
    client.copy_object(Bucket=bucket, Key="replaced", CopySource=source,
                       TaggingDirective="REPLACE", Tagging="fresh=tag")
    assert _tags(client, bucket, "replaced") == {"fresh": "tag"}
    client.copy_object(Bucket=bucket, Key="cleared", CopySource=source,
                       TaggingDirective="REPLACE")
    assert _tags(client, bucket, "cleared") == {}
    # metadata REPLACE leaves the tagging directive's default (COPY) alone
    client.copy_object(Bucket=bucket, Key="meta", CopySource=source,
                       MetadataDirective="REPLACE", Metadata={"m": "v"})
    assert _tags(client, bucket, "meta") == {"n": "1", "origin": "src"}
    assert client.get_object(Bucket=bucket, Key="replaced")["Body"].read() == b"source bytes"
    assert _code_of(lambda: client.copy_object(
        Bucket=bucket, Key="bad", CopySource=source, TaggingDirective="MERGE")) == (
        "InvalidArgument", 400)
    assert _tags(client, bucket, "src") == {"n": "1", "origin": "src"}


@pytest.mark.parametrize(("tags", "code"), [
    ({f"k{i}": "v" for i in range(11)}, ("BadRequest", 400)),
    ({"k" * 129: "v"}, ("InvalidTag", 400)),
    ({"k": "v" * 257}, ("InvalidTag", 400)),
    ({"aws:createdBy": "me"}, ("InvalidTag", 400)),
])
def test_limits_refused_and_nothing_changed(client, bucket, tags, code):
    key = f"limits-{uuid.uuid4().hex[:6]}"
    client.put_object(Bucket=bucket, Key=key, Body=b"kept", Tagging="keep=me")
    assert _code_of(lambda: client.put_object_tagging(Bucket=bucket, Key=key,
                                                      Tagging=_tag_set(tags))) == code
    header = "&".join(f"{k}={v}" for k, v in tags.items())
    assert _code_of(lambda: client.put_object(Bucket=bucket, Key=key, Body=b"new",
                                              Tagging=header)) == code
    assert _tags(client, bucket, key) == {"keep": "me"}
    assert client.get_object(Bucket=bucket, Key=key)["Body"].read() == b"kept"


def test_duplicate_keys_and_malformed_documents(s3, client, bucket):
    client.put_object(Bucket=bucket, Key="dup", Body=b"x", Tagging="keep=me")
    assert _code_of(lambda: client.put_object_tagging(Bucket=bucket, Key="dup", Tagging={
        "TagSet": [{"Key": "a", "Value": "1"}, {"Key": "a", "Value": "2"}]})) == (
        "InvalidTag", 400)
    assert _code_of(lambda: client.put_object(Bucket=bucket, Key="dup", Body=b"y",
                                              Tagging="a=1&a=2")) == ("InvalidArgument", 400)
    for body in (b"<Tagging><TagSet>", b"<Tagging></Tagging>", b"not xml"):
        path = f"/{bucket}/dup?tagging"
        headers = signed_headers(s3, "PUT", f"{s3.url}{path}",
                                 payload_hash=hashlib.sha256(body).hexdigest(),
                                 headers={"Content-Length": str(len(body))})
        resp = raw_request(s3, "PUT", path, headers=headers, body=body)
        assert resp.status == 400 and b"<Code>MalformedXML</Code>" in resp.body, resp.body
    assert _tags(client, bucket, "dup") == {"keep": "me"}


def test_bucket_tagging_round_trip(client):
    name = f"tagged-bucket-{uuid.uuid4().hex[:6]}"
    client.create_bucket(Bucket=name)
    assert _code_of(lambda: client.get_bucket_tagging(Bucket=name)) == ("NoSuchTagSet", 404)
    fifty = {f"key{i:02d}": f"value {i}" for i in range(50)}
    client.put_bucket_tagging(Bucket=name, Tagging=_tag_set(fifty))
    got = client.get_bucket_tagging(Bucket=name)["TagSet"]
    assert {t["Key"]: t["Value"] for t in got} == fifty
    for refused in ({**fifty, "one-more": "x"}, {"aws:system": "x"}):
        assert _code_of(lambda tags=refused: client.put_bucket_tagging(
            Bucket=name, Tagging=_tag_set(tags)))[1] == 400
    assert len(client.get_bucket_tagging(Bucket=name)["TagSet"]) == 50
    client.put_bucket_tagging(Bucket=name, Tagging=_tag_set({"env": "prod"}))
    assert client.get_bucket_tagging(Bucket=name)["TagSet"] == [{"Key": "env",
                                                                  "Value": "prod"}]
    assert client.delete_bucket_tagging(Bucket=name)["ResponseMetadata"][
        "HTTPStatusCode"] == 204
    assert _code_of(lambda: client.get_bucket_tagging(Bucket=name)) == ("NoSuchTagSet", 404)
    # a bucket made again under the same name starts untagged
    client.put_bucket_tagging(Bucket=name, Tagging=_tag_set({"env": "prod"}))
    client.delete_bucket(Bucket=name)
    assert _code_of(lambda: client.get_bucket_tagging(Bucket=name)) == ("NoSuchBucket", 404)
    client.create_bucket(Bucket=name)
    assert _code_of(lambda: client.get_bucket_tagging(Bucket=name)) == ("NoSuchTagSet", 404)
    client.delete_bucket(Bucket=name)


def test_tags_of_an_sse_c_object_change_without_its_key(s3, bucket):
    if os.environ.get("TESSERA_S3_BACKEND", "cluster") == "memory":
        pytest.skip("the in-memory backend does not encrypt")
    client = s3.client(https=True)
    key_c = os.urandom(32)
    sse = {"SSECustomerAlgorithm": "AES256", "SSECustomerKey": key_c}
    data = os.urandom(300_000)
    client.put_object(Bucket=bucket, Key="secret", Body=data, Tagging="class=secret", **sse)
    # S3 asks no customer key for the tagging operations: tags are metadata, not content
    assert _tags(client, bucket, "secret") == {"class": "secret"}
    client.put_object_tagging(Bucket=bucket, Key="secret",
                              Tagging=_tag_set({"class": "public", "x": "y"}))
    got = client.get_object(Bucket=bucket, Key="secret", **sse)
    assert got["Body"].read() == data and got["TagCount"] == 2
    assert _code_of(lambda: client.get_object(Bucket=bucket, Key="secret"))[1] == 400
    client.delete_object_tagging(Bucket=bucket, Key="secret")
    assert client.get_object(Bucket=bucket, Key="secret", **sse)["Body"].read() == data
    assert _tags(client, bucket, "secret") == {}


def test_aws_cli_object_tagging(s3, client, bucket):
    client.put_object(Bucket=bucket, Key="cli.txt", Body=b"cli")
    s3.aws("s3api", "put-object-tagging", "--bucket", bucket, "--key", "cli.txt",
           "--tagging", "TagSet=[{Key=project,Value=tessera},{Key=owner,Value=ops}]")
    out = s3.aws("s3api", "get-object-tagging", "--bucket", bucket, "--key", "cli.txt")
    tag_set = json.loads(out.stdout)["TagSet"]
    assert tag_set == [{"Key": "owner", "Value": "ops"}, {"Key": "project", "Value": "tessera"}]
    assert _tags(client, bucket, "cli.txt") == {"owner": "ops", "project": "tessera"}
