"""Byte ranges and conditional requests, with S3's rules.

Range: one range only (`bytes=a-b`, `bytes=a-`, `bytes=-n`); syntax S3 does not understand is
ignored (the whole object is served); a range that starts past the end is 416 InvalidRange.
Conditions (RFC 7232 precedence, as S3): If-Match before If-Unmodified-Since, If-None-Match
before If-Modified-Since; a failed If-None-Match/If-Modified-Since on GET/HEAD is 304, any
other failure 412. Copy-source conditions (`x-amz-copy-source-if-*`) fail with 412 only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.objects.api import ObjectInfo

from .errors import S3Error
from .metadata import parse_http_date

__all__ = ["ByteRange", "NotModified", "check_conditions", "parse_range"]

_RANGE_RE = re.compile(r"^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$", re.IGNORECASE)


@dataclass(frozen=True)
class ByteRange:
    start: int
    length: int

    @property
    def end(self) -> int:
        """The last byte's offset (inclusive), as in Content-Range."""
        return self.start + self.length - 1

    def content_range(self, size: int) -> str:
        return f"bytes {self.start}-{self.end}/{size}"


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The range to serve, None for the whole object; raises InvalidRange (416) when the
    range cannot be satisfied."""
    if not header:
        return None
    match = _RANGE_RE.match(header)
    if not match or "," in header:
        return None
    first, last = match.groups()
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(size)
        length = min(suffix, size)
        return ByteRange(size - length, length)
    start = int(first)
    end = int(last) if last != "" else size - 1
    if last != "" and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(size)
    end = min(end, size - 1)
    return ByteRange(start, end - start + 1)


def _unsatisfiable(size: int) -> S3Error:
    return S3Error("InvalidRange", headers={"content-range": f"bytes */{size}"},
                   ActualObjectSize=str(size))


class NotModified(Exception):
    """A GET/HEAD condition says the client's copy is current: answer 304."""


def _etags(value: str) -> list[str]:
    return [v.strip().removeprefix("W/").strip('"') for v in value.split(",") if v.strip()]


def _etag_matches(value: str, etag: str) -> bool:
    return any(tag in ("*", etag) for tag in _etags(value))


def check_conditions(headers: Mapping[str, str], info: ObjectInfo, *,
                     prefix: str = "if-", copy_source: bool = False) -> None:
    """Raise NotModified (GET/HEAD) or S3Error PreconditionFailed when a condition fails."""
    modified = info.last_modified_ns // 1_000_000_000  # HTTP dates carry whole seconds
    if_match = headers.get(prefix + "match")
    if_unmodified = headers.get(prefix + "unmodified-since")
    if_none_match = headers.get(prefix + "none-match")
    if_modified = headers.get(prefix + "modified-since")
    if if_match is not None:
        if not _etag_matches(if_match, info.etag):
            raise _failed(prefix + "match")
    elif if_unmodified is not None:
        when = parse_http_date(if_unmodified)
        if when is not None and modified > when:
            raise _failed(prefix + "unmodified-since")
    if if_none_match is not None:
        if _etag_matches(if_none_match, info.etag):
            if copy_source:
                raise _failed(prefix + "none-match")
            raise NotModified()
    elif if_modified is not None:
        when = parse_http_date(if_modified)
        if when is not None and modified <= when:
            if copy_source:
                raise _failed(prefix + "modified-since")
            raise NotModified()


def _failed(header: str) -> S3Error:
    return S3Error("PreconditionFailed", Condition=header.title().replace("X-Amz", "x-amz"))
