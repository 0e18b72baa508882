"""Listing 2,000 keys through boto3: v1 and v2, prefixes, single- and multi-character
delimiters, pagination (markers, continuation tokens, start-after), max-keys 0, url encoding."""

from __future__ import annotations

import hashlib
import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import ClientError

from tests.integration.s3_gateway import S3Endpoint, raw_request, s3, signed_headers

__all__ = ["s3"]

DIRS = 20
FILES_PER_DIR = 95
TOP_LEVEL = 100  # 20 * 95 + 100 = 2,000 keys


def _all_keys() -> list[str]:
    keys = [f"dir{d:02d}/file{f:03d}" for d in range(DIRS) for f in range(FILES_PER_DIR)]
    keys += [f"top{t:03d}" for t in range(TOP_LEVEL)]
    return sorted(keys)


@pytest.fixture(scope="module")
def client(s3: S3Endpoint):
    return s3.client(max_pool_connections=16)


@pytest.fixture(scope="module")
def bucket(client) -> str:
    name = f"listing-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=name, Key=k, Body=k.encode()),
                      _all_keys()))
    return name


def _pages_v2(client, **kwargs) -> list[dict]:
    pages = []
    token = None
    for _ in range(500):
        args = dict(kwargs)
        if token:
            args["ContinuationToken"] = token
        page = client.list_objects_v2(**args)
        pages.append(page)
        if not page["IsTruncated"]:
            return pages
        token = page["NextContinuationToken"]
    raise AssertionError("listing did not end")


def _pages_v1(client, **kwargs) -> list[dict]:
    pages = []
    marker = ""
    for _ in range(500):
        page = client.list_objects(Marker=marker, **kwargs)
        pages.append(page)
        if not page["IsTruncated"]:
            return pages
        if "NextMarker" in page:
            marker = page["NextMarker"]
        else:
            marker = page["Contents"][-1]["Key"]
    raise AssertionError("listing did not end")


def test_v2_flat_listing_pages_through_everything(client, bucket):
    pages = _pages_v2(client, Bucket=bucket)
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert keys == _all_keys()
    assert len(pages) == 2
    assert [p["KeyCount"] for p in pages] == [1000, 1000]
    assert [p["IsTruncated"] for p in pages] == [True, False]


def test_v1_flat_listing_pages_through_everything(client, bucket):
    pages = _pages_v1(client, Bucket=bucket, MaxKeys=700)
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert keys == _all_keys()
    assert [p["IsTruncated"] for p in pages] == [True, True, False]


@pytest.mark.parametrize("max_keys", [1, 7, 50, 1000])
def test_v2_delimiter_pagination(client, bucket, max_keys):
    pages = _pages_v2(client, Bucket=bucket, Delimiter="/", MaxKeys=max_keys)
    prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert prefixes == [f"dir{d:02d}/" for d in range(DIRS)]
    assert keys == [f"top{t:03d}" for t in range(TOP_LEVEL)]
    for page in pages:
        assert page["KeyCount"] == len(page.get("Contents", [])) + len(
            page.get("CommonPrefixes", []))
        assert page["KeyCount"] <= max_keys
    assert all(p["IsTruncated"] for p in pages[:-1])
    assert not pages[-1]["IsTruncated"]
    assert len(pages) == -(-(DIRS + TOP_LEVEL) // max_keys)


@pytest.mark.parametrize("max_keys", [3, 1000])
def test_v1_delimiter_pagination_uses_next_marker(client, bucket, max_keys):
    pages = _pages_v1(client, Bucket=bucket, Delimiter="/", MaxKeys=max_keys)
    prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
    keys = [o["Key"] for p in pages for o in p.get("Contents", [])]
    assert prefixes == [f"dir{d:02d}/" for d in range(DIRS)]
    assert keys == [f"top{t:03d}" for t in range(TOP_LEVEL)]
    for page in pages[:-1]:
        assert page["NextMarker"]


def test_prefix_and_delimiter(client, bucket):
    page = client.list_objects_v2(Bucket=bucket, Prefix="dir07/", Delimiter="/")
    assert [o["Key"] for o in page["Contents"]] == [
        f"dir07/file{f:03d}" for f in range(FILES_PER_DIR)]
    assert "CommonPrefixes" not in page
    page = client.list_objects_v2(Bucket=bucket, Prefix="dir0", Delimiter="/")
    assert [c["Prefix"] for c in page["CommonPrefixes"]] == [f"dir0{d}/" for d in range(10)]
    page = client.list_objects_v2(Bucket=bucket, Prefix="nothing-here/")
    assert page["KeyCount"] == 0
    assert page["IsTruncated"] is False


def test_multi_character_delimiter(client, bucket):
    page = client.list_objects_v2(Bucket=bucket, Delimiter="/file0", Prefix="dir1")
    assert [c["Prefix"] for c in page["CommonPrefixes"]] == [
        f"dir{d}/file0" for d in range(10, 20)]
    assert "Contents" not in page


def test_max_keys_zero(client, bucket):
    page = client.list_objects_v2(Bucket=bucket, MaxKeys=0)
    assert page["KeyCount"] == 0
    assert "Contents" not in page
    assert page["IsTruncated"] is False
    page = client.list_objects(Bucket=bucket, MaxKeys=0)
    assert "Contents" not in page


def test_start_after(client, bucket):
    page = client.list_objects_v2(Bucket=bucket, StartAfter="dir19/file093", MaxKeys=3)
    assert [o["Key"] for o in page["Contents"]] == ["dir19/file094", "top000", "top001"]
    page = client.list_objects_v2(Bucket=bucket, StartAfter="dir05/", Delimiter="/", MaxKeys=2)
    # the prefix named by start-after is not repeated
    assert [c["Prefix"] for c in page["CommonPrefixes"]] == ["dir06/", "dir07/"]


def test_bad_continuation_token(s3, bucket):
    path = f"/{bucket}?list-type=2&continuation-token=%25%25not-base64"
    headers = signed_headers(s3, "GET", s3.url + path,
                             payload_hash=hashlib.sha256(b"").hexdigest())
    resp = raw_request(s3, "GET", path, headers=headers)
    assert resp.status == 400
    assert b"<Code>InvalidArgument</Code>" in resp.body


def test_url_encoding_of_awkward_keys(client, bucket):
    awkward = ["enc/a b", "enc/plus+", "enc/amp&lt", "enc/ctrl\x01char", "enc/ümlaut"]
    for key in awkward:
        client.put_object(Bucket=bucket, Key=key, Body=b"x")
    # boto3 asks for encoding-type=url and decodes the answer itself
    page = client.list_objects_v2(Bucket=bucket, Prefix="enc/")
    assert sorted(o["Key"] for o in page["Contents"]) == sorted(awkward)
    assert page.get("EncodingType") == "url"
    page = client.list_objects(Bucket=bucket, Prefix="enc/", Delimiter=" ")
    assert [c["Prefix"] for c in page["CommonPrefixes"]] == ["enc/a "]
    for key in awkward:
        client.delete_object(Bucket=bucket, Key=key)


def test_listing_a_missing_bucket(client):
    with pytest.raises(ClientError) as exc:
        client.list_objects_v2(Bucket="missing-bucket-for-listing")
    assert exc.value.response["Error"]["Code"] == "NoSuchBucket"


def test_aws_cli_recursive_listing(s3, bucket):
    out = s3.aws("s3", "ls", "--recursive", f"s3://{bucket}/dir03/").stdout
    assert len(out.strip().splitlines()) == FILES_PER_DIR
    out = s3.aws("s3api", "list-objects-v2", "--bucket", bucket, "--delimiter", "/",
                 "--query", "length(CommonPrefixes)").stdout
    assert out.strip() == str(DIRS)


def _version_pages(client, **kwargs) -> list[dict]:
    """boto3's own paginator: it follows NextKeyMarker / NextVersionIdMarker."""
    paginator = client.get_paginator("list_object_versions")
    return list(paginator.paginate(**kwargs, PaginationConfig={"MaxItems": 5000}))


@pytest.mark.parametrize("delimiter", ["", "/"])
def test_object_versions_of_an_unversioned_bucket(client, bucket, delimiter):
    """Each key's one version is `null` and latest, as S3 reports an unversioned bucket
    (minio's list_objects(include_version=True), rclone --s3-versions); pages follow the key
    and version markers."""
    pages = _version_pages(client, Bucket=bucket, Delimiter=delimiter, MaxKeys=333)
    versions = [v for p in pages for v in p.get("Versions", [])]
    prefixes = [c["Prefix"] for p in pages for c in p.get("CommonPrefixes", [])]
    if delimiter:
        assert prefixes == [f"dir{d:02d}/" for d in range(DIRS)]
        assert [v["Key"] for v in versions] == [f"top{t:03d}" for t in range(TOP_LEVEL)]
    else:
        assert len(pages) == 7 and prefixes == []
        assert [v["Key"] for v in versions] == _all_keys()
    assert {(v["VersionId"], v["IsLatest"]) for v in versions} == {("null", True)}
    first = versions[0]
    assert first["ETag"] == f'"{hashlib.md5(first["Key"].encode()).hexdigest()}"'
    assert first["Size"] == len(first["Key"])
    assert all("DeleteMarkers" not in p for p in pages)


def test_null_version_reads_the_object(client, bucket, s3):
    key = "top007"
    got = client.get_object(Bucket=bucket, Key=key, VersionId="null")
    assert got["Body"].read() == key.encode()
    assert client.head_object(Bucket=bucket, Key=key, VersionId="null")["ContentLength"] == 6
    client.copy_object(Bucket=bucket, Key="copied-null",
                       CopySource={"Bucket": bucket, "Key": key, "VersionId": "null"})
    assert client.get_object(Bucket=bucket, Key="copied-null")["Body"].read() == key.encode()
    client.delete_object(Bucket=bucket, Key="copied-null")
    with pytest.raises(ClientError) as exc:
        client.list_object_versions(Bucket=bucket, VersionIdMarker="null")
    assert exc.value.response["Error"]["Code"] == "InvalidArgument"
