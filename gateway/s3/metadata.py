"""Object metadata on the wire: request headers -> `PutMetadata`, `ObjectInfo` -> response
headers (ETag, Last-Modified, Content-*, x-amz-meta-*, checksums), and HTTP dates."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC
from email.utils import formatdate, parsedate_to_datetime

from gateway.objects.api import ObjectInfo, PutMetadata

from .checksums import header_name
from .errors import S3Error
from .tagging import parse_tagging_header

__all__ = [
    "STORED_HEADERS",
    "checksum_headers",
    "http_date",
    "object_headers",
    "parse_http_date",
    "put_metadata",
]

# Headers stored with an object and returned on GET/HEAD, besides Content-Type.
STORED_HEADERS = ("content-encoding", "content-disposition", "content-language",
                  "cache-control", "expires")
USER_PREFIX = "x-amz-meta-"
MAX_USER_METADATA = 2 * 1024  # bytes of x-amz-meta-* names and values, as S3


def http_date(ns: int) -> str:
    return formatdate(ns // 1_000_000_000, usegmt=True)


def parse_http_date(value: str) -> float | None:
    """Seconds since the epoch; None when the value is not an HTTP date (S3 then ignores the
    condition that carries it)."""
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _content_encoding(value: str) -> str:
    # aws-chunked describes the transfer, not the object (garage and seaweedfs learned this)
    kept = [v.strip() for v in value.split(",") if v.strip() and v.strip() != "aws-chunked"]
    return ",".join(kept)


def put_metadata(h: Mapping[str, str], checksums: Mapping[str, str] | None = None
                 ) -> PutMetadata:
    """The metadata a PUT, CopyObject (REPLACE) or CreateMultipartUpload asks to store, with
    the tag set of its x-amz-tagging header."""
    headers: dict[str, str] = {}
    for name in STORED_HEADERS:
        if name in h:
            value = _content_encoding(h[name]) if name == "content-encoding" else h[name]
            if value:
                headers[name] = value
    user = {name[len(USER_PREFIX):]: value for name, value in h.items()
            if name.startswith(USER_PREFIX) and len(name) > len(USER_PREFIX)}
    if sum(len(k) + len(v) for k, v in user.items()) > MAX_USER_METADATA:
        raise S3Error("MetadataTooLarge")
    return PutMetadata(content_type=h.get("content-type") or "binary/octet-stream",
                       headers=headers, user_metadata=user,
                       checksums=checksums if checksums is not None else {},
                       tags=parse_tagging_header(h.get("x-amz-tagging", "")))


def object_headers(info: ObjectInfo, *, with_checksums: bool = False) -> dict[str, str]:
    """Headers describing a stored object on GET and HEAD (length and range set by the caller)."""
    meta = info.metadata
    headers = {
        "etag": f'"{info.etag}"',
        "last-modified": http_date(info.last_modified_ns),
        "accept-ranges": "bytes",
        "content-type": meta.content_type,
    }
    headers.update(meta.headers)
    for name, value in meta.user_metadata.items():
        headers[USER_PREFIX + name.lower()] = value
    if meta.tags:
        headers["x-amz-tagging-count"] = str(len(meta.tags))
    if with_checksums:
        headers.update(checksum_headers(meta.checksums))
    return headers


def checksum_headers(checksums: Mapping[str, str]) -> dict[str, str]:
    headers = {}
    for algorithm, value in checksums.items():
        if value:
            headers[header_name(algorithm)] = value
            headers["x-amz-checksum-type"] = "COMPOSITE" if "-" in value else "FULL_OBJECT"
    return headers

