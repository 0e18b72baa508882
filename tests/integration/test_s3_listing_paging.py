"""Listing through boto3 over a real cluster: 1,300 keys with unicode and special characters
paged by 1000 and by small pages (prefix, delimiter, StartAfter, continuation tokens), keys
deleted or overwritten listing as the quorum agrees, and ListMultipartUploads paged by
boto3's paginator with and without a delimiter."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.integration.s3_gateway import S3Endpoint, s3

__all__ = ["s3"]

NAMES = ["plain", "ünïcödé", "日本語", "space name", "plus+sign", "percent%41", "amp&lt",
         "quote\"'", "emoji-🎉", "tab\tname", "semi;colon", "eq=", "q?mark", "hash#",
         "tilde~", "back\\slash", "brace{}"]


def _keys() -> list[str]:
    keys = [f"d{d}/{NAMES[i % len(NAMES)]}-{i:04d}" for d in range(5) for i in range(240)]
    keys += [f"top-{NAMES[i % len(NAMES)]}-{i:03d}" for i in range(100)]
    keys += ["a/b/c", "a/b/d", "a/e", "z", "~last"]
    return keys  # 1,305 keys


@pytest.fixture(scope="module")
def client(s3: S3Endpoint):
    return s3.client(max_pool_connections=16)


@pytest.fixture(scope="module")
def bucket(client) -> str:
    name = f"paging-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(lambda k: client.put_object(Bucket=name, Key=k, Body=k.encode()),
                      _keys()))
    return name


def _list(client, bucket: str, page: int = 1000, **kwargs) -> tuple[list[str], list[str], int]:
    keys, prefixes, pages = [], [], 0
    for result in client.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": page}, **kwargs):
        keys += [c["Key"] for c in result.get("Contents", [])]
        prefixes += [p["Prefix"] for p in result.get("CommonPrefixes", [])]
        pages += 1
        assert result["KeyCount"] <= page
    return keys, prefixes, pages


def _utf8_sorted(keys) -> list[str]:
    return sorted(keys, key=lambda k: k.encode())


def test_whole_bucket_in_pages_of_1000(client, bucket):
    keys, prefixes, pages = _list(client, bucket)
    assert keys == _utf8_sorted(_keys())
    assert not prefixes and pages == 2


def test_small_pages_and_continuation_tokens(client, bucket):
    keys, _, pages = _list(client, bucket, page=97, Prefix="d3/")
    assert keys == _utf8_sorted(k for k in _keys() if k.startswith("d3/"))
    assert pages == -(-240 // 97)


def test_start_after_with_unicode_key(client, bucket):
    everything = _utf8_sorted(_keys())
    after = next(k for k in everything if "日本語" in k and k.startswith("d2/"))
    keys, _, _ = _list(client, bucket, StartAfter=after)
    assert keys == everything[everything.index(after) + 1:]


def test_delimiter_folds_prefixes_across_pages(client, bucket):
    keys, prefixes, _ = _list(client, bucket, page=3, Delimiter="/")
    assert prefixes == ["a/", "d0/", "d1/", "d2/", "d3/", "d4/"]
    assert keys == _utf8_sorted(k for k in _keys() if "/" not in k)
    keys, prefixes, _ = _list(client, bucket, page=1, Prefix="a/", Delimiter="/")
    assert (keys, prefixes) == (["a/e"], ["a/b/"])


def test_deleted_and_overwritten_keys_list_as_agreed(client, bucket):
    client.put_object(Bucket=bucket, Key="d1/zz-over", Body=b"one")
    client.put_object(Bucket=bucket, Key="d1/zz-over", Body=b"two, longer")
    gone = [k for k in _keys() if k.startswith("d4/")]
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda k: client.delete_object(Bucket=bucket, Key=k), gone))
    try:
        listed = client.list_objects_v2(Bucket=bucket, Prefix="d1/zz-")["Contents"]
        assert [(c["Key"], c["Size"]) for c in listed] == [("d1/zz-over", 11)]
        _, prefixes, _ = _list(client, bucket, page=2, Delimiter="/")
        assert "d4/" not in prefixes and "d3/" in prefixes
        assert not _list(client, bucket, Prefix="d4/")[0]
    finally:
        with ThreadPoolExecutor(max_workers=8) as pool:
            list(pool.map(lambda k: client.put_object(Bucket=bucket, Key=k, Body=k.encode()),
                          gone))
        client.delete_object(Bucket=bucket, Key="d1/zz-over")


def _uploads(client, bucket: str, page: int, **kwargs) -> tuple[list[tuple[str, str]],
                                                                 list[str]]:
    uploads, prefixes = [], []
    for result in client.get_paginator("list_multipart_uploads").paginate(
            Bucket=bucket, PaginationConfig={"PageSize": page}, **kwargs):
        got = [(u["Key"], u["UploadId"]) for u in result.get("Uploads", [])]
        got_prefixes = [p["Prefix"] for p in result.get("CommonPrefixes", [])]
        assert len(got) + len(got_prefixes) <= page
        uploads += got
        prefixes += got_prefixes
    return uploads, prefixes


def test_list_multipart_uploads_pages(client):
    name = f"uploads-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    keys = [f"dir{d}/u{i:02d}" for d in range(3) for i in range(8)] + \
        [f"top{i:02d}" for i in range(6)] + ["same"] * 3
    with ThreadPoolExecutor(max_workers=8) as pool:
        made = list(pool.map(lambda k: (k, client.create_multipart_upload(
            Bucket=name, Key=k)["UploadId"]), keys))
    try:
        want = sorted(made)
        assert _uploads(client, name, 7) == (want, [])
        assert _uploads(client, name, 1, Prefix="same") == ([u for u in want if u[0] == "same"],
                                                            [])
        uploads, prefixes = _uploads(client, name, 2, Delimiter="/")
        assert prefixes == ["dir0/", "dir1/", "dir2/"]
        assert uploads == [u for u in want if "/" not in u[0]]
        uploads, prefixes = _uploads(client, name, 3, Prefix="dir1/", Delimiter="/")
        assert (uploads, prefixes) == ([u for u in want if u[0].startswith("dir1/")], [])
    finally:
        for key, upload_id in made:
            client.abort_multipart_upload(Bucket=name, Key=key, UploadId=upload_id)
    assert _uploads(client, name, 1000) == ([], [])
    client.delete_bucket(Bucket=name)


def test_list_multipart_uploads_300_in_pages_of_7(client):
    name = f"uploads300-{uuid.uuid4().hex[:8]}"
    client.create_bucket(Bucket=name)
    keys = [f"k{i % 80:02d}" for i in range(240)] + \
        [f"dir{d}/u{i:02d}" for d in range(3) for i in range(20)]  # 300, most keys thrice
    with ThreadPoolExecutor(max_workers=16) as pool:
        made = list(pool.map(lambda k: (k, client.create_multipart_upload(
            Bucket=name, Key=k)["UploadId"]), keys))
    try:
        want = sorted(made)
        assert _uploads(client, name, 7) == (want, [])
        uploads, prefixes = _uploads(client, name, 7, Delimiter="/")
        assert prefixes == ["dir0/", "dir1/", "dir2/"]
        assert uploads == [u for u in want if "/" not in u[0]]
        # resuming inside one key's uploads, from the markers a page reports
        page = client.list_multipart_uploads(Bucket=name, MaxUploads=7, KeyMarker=want[1][0],
                                             UploadIdMarker=want[1][1])
        assert [(u["Key"], u["UploadId"]) for u in page["Uploads"]] == want[2:9]
        assert page["IsTruncated"]
        assert (page["NextKeyMarker"], page["NextUploadIdMarker"]) == want[8]
    finally:
        with ThreadPoolExecutor(max_workers=16) as pool:
            list(pool.map(lambda u: client.abort_multipart_upload(
                Bucket=name, Key=u[0], UploadId=u[1]), made))
    assert _uploads(client, name, 1000) == ([], [])
    client.delete_bucket(Bucket=name)
