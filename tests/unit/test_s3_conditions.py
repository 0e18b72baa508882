"""Byte ranges and conditional headers, with S3's precedence rules."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from gateway.objects.api import ObjectInfo
from gateway.s3.conditions import ByteRange, NotModified, check_conditions, parse_range
from gateway.s3.errors import S3Error

MODIFIED = 1_700_000_000


def _info(etag: str = "abc123") -> ObjectInfo:
    return ObjectInfo("b", "k", "v1", 100, etag, MODIFIED * 1_000_000_000 + 500_000_000)


def _date(seconds: int) -> str:
    return formatdate(seconds, usegmt=True)


@pytest.mark.parametrize(("header", "expected"), [
    ("bytes=0-9", ByteRange(0, 10)),
    ("bytes=10-", ByteRange(10, 90)),
    ("bytes=-10", ByteRange(90, 10)),
    ("bytes=-1000", ByteRange(0, 100)),
    ("bytes=50-5000", ByteRange(50, 50)),
    ("bytes=99-99", ByteRange(99, 1)),
    ("Bytes = 1 - 2", ByteRange(1, 2)),
    (None, None), ("", None),
    ("bytes=5-1", None),  # invalid: ignored, whole object
    ("bytes=a-b", None), ("items=0-1", None), ("bytes=-", None),
    ("bytes=0-1,5-6", None),  # multiple ranges: S3 serves the whole object
])
def test_parse_range(header, expected):
    assert parse_range(header, 100) == expected


@pytest.mark.parametrize(("header", "size"), [
    ("bytes=100-", 100), ("bytes=100-200", 100), ("bytes=-0", 100), ("bytes=0-", 0),
    ("bytes=-5", 0)])
def test_unsatisfiable(header, size):
    with pytest.raises(S3Error) as exc:
        parse_range(header, size)
    assert exc.value.code == "InvalidRange"
    assert exc.value.status == 416
    assert exc.value.headers["content-range"] == f"bytes */{size}"


def test_content_range():
    assert ByteRange(5, 10).content_range(100) == "bytes 5-14/100"


def _outcome(headers: dict[str, str], **kwargs) -> str:
    try:
        check_conditions(headers, _info(), **kwargs)
    except NotModified:
        return "304"
    except S3Error as exc:
        return str(exc.status)
    return "200"


@pytest.mark.parametrize(("headers", "expected"), [
    ({}, "200"),
    ({"if-match": '"abc123"'}, "200"),
    ({"if-match": "abc123"}, "200"),
    ({"if-match": '"x", "abc123"'}, "200"),
    ({"if-match": "*"}, "200"),
    ({"if-match": '"other"'}, "412"),
    ({"if-none-match": '"abc123"'}, "304"),
    ({"if-none-match": "*"}, "304"),
    ({"if-none-match": '"other"'}, "200"),
    ({"if-modified-since": _date(MODIFIED)}, "304"),
    ({"if-modified-since": _date(MODIFIED - 1)}, "200"),
    ({"if-unmodified-since": _date(MODIFIED)}, "200"),
    ({"if-unmodified-since": _date(MODIFIED - 1)}, "412"),
    ({"if-modified-since": "not a date"}, "200"),
    ({"if-unmodified-since": "garbage"}, "200"),
    # S3: If-Match true + If-Unmodified-Since false -> 200
    ({"if-match": '"abc123"', "if-unmodified-since": _date(MODIFIED - 100)}, "200"),
    # S3: If-None-Match false + If-Modified-Since true -> 304
    ({"if-none-match": '"abc123"', "if-modified-since": _date(MODIFIED - 100)}, "304"),
    # If-None-Match (no match) wins over If-Modified-Since (not modified)
    ({"if-none-match": '"other"', "if-modified-since": _date(MODIFIED + 100)}, "200"),
    ({"if-match": '"other"', "if-none-match": '"other"'}, "412"),
])
def test_get_conditions(headers, expected):
    assert _outcome(headers) == expected


@pytest.mark.parametrize(("headers", "expected"), [
    ({"x-amz-copy-source-if-match": '"abc123"'}, "200"),
    ({"x-amz-copy-source-if-match": '"nope"'}, "412"),
    ({"x-amz-copy-source-if-none-match": '"abc123"'}, "412"),
    ({"x-amz-copy-source-if-modified-since": _date(MODIFIED + 10)}, "412"),
    ({"x-amz-copy-source-if-unmodified-since": _date(MODIFIED - 10)}, "412"),
    ({"x-amz-copy-source-if-match": '"abc123"',
      "x-amz-copy-source-if-unmodified-since": _date(MODIFIED - 10)}, "200"),
    ({"if-match": '"nope"'}, "200"),  # plain conditions do not apply to the copy source
])
def test_copy_source_conditions(headers, expected):
    assert _outcome(headers, prefix="x-amz-copy-source-if-", copy_source=True) == expected
