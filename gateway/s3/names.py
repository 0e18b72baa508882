"""S3 naming rules: bucket names (as CreateBucket enforces them) and object keys."""

from __future__ import annotations

import ipaddress
import re

from .errors import S3Error

__all__ = ["MAX_KEY_BYTES", "check_bucket_name", "check_key"]

MAX_KEY_BYTES = 1024
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RESERVED_PREFIXES = ("xn--", "sthree-", "amzn-s3-demo-")
_RESERVED_SUFFIXES = ("-s3alias", "--ol-s3", "--x-s3", ".mrap")


def bucket_name_problem(name: str) -> str | None:
    """Why `name` is not a valid bucket name, or None when it is."""
    if not 3 <= len(name) <= 63:
        return "Bucket names must be between 3 and 63 characters long."
    if not _BUCKET_RE.match(name):
        return ("Bucket names may contain only lower-case letters, digits, dots and hyphens, "
                "and must begin and end with a letter or digit.")
    if ".." in name or ".-" in name or "-." in name:
        return "Bucket names must not contain two adjacent periods or a period beside a hyphen."
    try:
        ipaddress.IPv4Address(name)
        return "Bucket names must not be formatted as an IP address."
    except ValueError:
        pass
    if name.startswith(_RESERVED_PREFIXES) or name.endswith(_RESERVED_SUFFIXES):
        return "Bucket names must not use a reserved prefix or suffix."
    return None


def check_bucket_name(name: str) -> None:
    problem = bucket_name_problem(name)
    if problem:
        raise S3Error("InvalidBucketName", problem, BucketName=name)


def check_key(key: str) -> None:
    try:
        size = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise S3Error("InvalidArgument", "Object keys must be valid UTF-8.") from None
    if size > MAX_KEY_BYTES:
        raise S3Error("KeyTooLongError", Size=str(size), MaxSizeAllowed=str(MAX_KEY_BYTES))
