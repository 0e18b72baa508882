"""S3 tag sets on the wire: the `<Tagging>` document, the `x-amz-tagging` header, and the limits
S3 puts on them (10 tags an object, 50 a bucket, keys of 1..128 and values of 0..256
characters counted in UTF-16 as S3 counts, unique keys, no `aws:` keys)."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping, Sequence
from urllib.parse import unquote_plus

from .errors import S3Error
from .xml import Element, parse_xml, render

__all__ = [
    "MAX_BUCKET_TAGS",
    "MAX_OBJECT_TAGS",
    "MAX_TAGGING_BODY",
    "check_tags",
    "parse_tagging_header",
    "parse_tagging_xml",
    "render_tagging",
]

MAX_OBJECT_TAGS = 10
MAX_BUCKET_TAGS = 50
MAX_KEY_UNITS = 128
MAX_VALUE_UNITS = 256
# 50 tags of 128 + 256 characters, each up to 4 UTF-8 bytes or a 6-byte entity, with markup
MAX_TAGGING_BODY = 256 * 1024
_HEADER_ERROR = ("The header 'x-amz-tagging' shall be encoded as UTF-8 then URLEncoded URL "
                 "query parameters without tag name duplicates.")


def _utf16_units(text: str) -> int:
    """S3 keeps tags in UTF-16: a character beyond the BMP takes two positions."""
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def _printable(text: str) -> bool:
    # control characters cannot round-trip through XML 1.0 nor mean anything in a tag
    return not any(unicodedata.category(c) in ("Cc", "Cs") for c in text)


def check_tags(pairs: Sequence[tuple[str, str]], *, bucket: bool = False) -> dict[str, str]:
    """The tag set `pairs` describe, in key order (as S3 returns it), or the S3 error for the
    first limit they break."""
    if bucket and len(pairs) > MAX_BUCKET_TAGS:
        raise S3Error("BadRequest", f"Bucket tag count cannot be greater than "
                                    f"{MAX_BUCKET_TAGS}")
    if not bucket and len(pairs) > MAX_OBJECT_TAGS:
        raise S3Error("BadRequest", f"Object tags cannot be greater than {MAX_OBJECT_TAGS}")
    tags: dict[str, str] = {}
    for key, value in pairs:
        if not key or _utf16_units(key) > MAX_KEY_UNITS or not _printable(key):
            raise S3Error("InvalidTag", "The TagKey you have provided is invalid")
        if _utf16_units(value) > MAX_VALUE_UNITS or not _printable(value):
            raise S3Error("InvalidTag", "The TagValue you have provided is invalid")
        if key[:4].lower() == "aws:":
            raise S3Error("InvalidTag", "System tags cannot be added/updated by requester"
                          if bucket else "Your TagKey cannot be prefixed with aws:")
        if key in tags:
            raise S3Error("InvalidTag", "Cannot provide multiple Tags with the same key")
        tags[key] = value
    return dict(sorted(tags.items()))


def parse_tagging_xml(body: bytes, *, bucket: bool = False) -> dict[str, str]:
    """PutObjectTagging / PutBucketTagging's `<Tagging><TagSet><Tag>...` body, checked."""
    root = parse_xml(body, "Tagging")
    tag_set = root.find("TagSet")
    if tag_set is None:
        raise S3Error("MalformedXML", "The element TagSet is required.")
    pairs: list[tuple[str, str]] = []
    for tag in tag_set:
        if tag.tag != "Tag":
            raise S3Error("MalformedXML", f"Unexpected element {tag.tag} in TagSet.")
        key, value = tag.find("Key"), tag.find("Value")
        if key is None or value is None:
            raise S3Error("MalformedXML", "Each Tag needs a Key and a Value.")
        pairs.append((key.text or "", value.text or ""))
    return check_tags(pairs, bucket=bucket)


def parse_tagging_header(value: str) -> dict[str, str]:
    """An object's tag set from `x-amz-tagging` (`k1=v1&k2=v2`, URL-encoded; `k` alone holds
    the empty value), checked as PutObjectTagging checks its document."""
    pairs: list[tuple[str, str]] = []
    seen: set[str] = set()
    for item in value.split("&"):
        if not item:
            continue
        if item.count("=") > 1:
            raise S3Error("InvalidArgument", _HEADER_ERROR, ArgumentName="x-amz-tagging",
                          ArgumentValue=value[:256])
        raw_key, _, raw_value = item.partition("=")
        try:
            key = unquote_plus(raw_key, errors="strict")
            text = unquote_plus(raw_value, errors="strict")
        except UnicodeDecodeError:
            raise S3Error("InvalidArgument", _HEADER_ERROR, ArgumentName="x-amz-tagging",
                          ArgumentValue=value[:256]) from None
        if key in seen:
            raise S3Error("InvalidArgument", _HEADER_ERROR, ArgumentName="x-amz-tagging",
                          ArgumentValue=value[:256])
        seen.add(key)
        pairs.append((key, text))
    return check_tags(pairs)


def render_tagging(tags: Mapping[str, str]) -> bytes:
    """GetObjectTagging / GetBucketTagging's document."""
    root = Element("Tagging")
    tag_set = root.add("TagSet")
    for key, value in tags.items():
        tag = tag_set.add("Tag")
        tag.add("Key", key)
        tag.add("Value", value)
    return render(root)
