"""ListObjects (v1), ListObjectsV2 and ListObjectVersions: prefix, delimiter (any length),
CommonPrefixes, max-keys (0 included), marker / NextMarker, opaque continuation tokens,
start-after, key and version-id markers, encoding-type=url, and MinIO's metadata=true.

The object layer lists keys in byte order after a cursor; delimiters are folded here. Having
emitted a common prefix P, the walk jumps the cursor to P + U+10FFFF: every later key under P
sorts before that, every key not under P after it, so a directory of a million keys costs one
step. A page is truncated only when one more entry exists beyond it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import quote

from gateway.objects.api import ObjectInfo

from ..errors import S3Error
from ..request import Context, Response
from ..xml import Element, iso8601
from .common import bucket_of, int_arg, owner_element, xml_response

__all__ = ["NULL_VERSION", "list_object_versions", "list_objects_v1", "list_objects_v2"]

MAX_KEYS = 1000
# Buckets are never versioned: S3 names the one version of each key "null", as it does for
# objects written while versioning was off.
NULL_VERSION = "null"
_PAST_PREFIX = "\U0010ffff"


@dataclass
class _Listing:
    keys: list[ObjectInfo]
    prefixes: list[str]
    truncated: bool
    last: str  # the last key or common prefix returned ("" when nothing was)


async def _walk(ctx: Context, bucket: str, prefix: str, delimiter: str, after: str,
                max_keys: int) -> _Listing:
    entries: list[tuple[str, ObjectInfo | None]] = []
    if max_keys == 0:
        await ctx.layer.head_bucket(bucket)
        return _Listing([], [], False, "")
    cursor, truncated = after, False
    while not truncated:
        page = await ctx.layer.list_objects(bucket, prefix=prefix, start_after=cursor,
                                            limit=min(MAX_KEYS, max_keys + 1 - len(entries)),
                                            delimiter=delimiter)
        for info in page.objects:
            cursor = info.key
            cut = info.key.find(delimiter, len(prefix)) if delimiter else -1
            if cut < 0:
                entries.append((info.key, info))
            else:
                common = info.key[: cut + len(delimiter)]
                if common > after and not (entries and entries[-1][0] == common):
                    entries.append((common, None))
                cursor = max(cursor, common + _PAST_PREFIX)
            if len(entries) > max_keys:
                break
        truncated = len(entries) > max_keys
        if not page.truncated:
            break
        # more keys follow a plain key: each is a key or a new common prefix, so one more
        # entry exists and no extra round is needed to know the page is truncated
        if len(entries) == max_keys and entries[-1][1] is not None:
            truncated = True
    entries = entries[:max_keys]
    return _Listing([i for _, i in entries if i is not None],
                    [name for name, i in entries if i is None], truncated,
                    entries[-1][0] if entries else "")


def _encoder(ctx: Context):
    encoding = ctx.req.args.get("encoding-type")
    if encoding is None:
        return lambda text: text
    if encoding.lower() != "url":
        raise S3Error("InvalidArgument", "Invalid Encoding Method specified in Request",
                      ArgumentName="encoding-type", ArgumentValue=encoding[:32])
    return lambda text: quote(text, safe="/")


# Header names that are also XML element names (UserMetadata below uses them as tags).
_XML_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
_SSE_HEADER = {"SSE-S3": ("X-Amz-Server-Side-Encryption", "AES256"),
               "SSE-KMS": ("X-Amz-Server-Side-Encryption", "aws:kms"),
               "SSE-C": ("X-Amz-Server-Side-Encryption-Customer-Algorithm", "AES256")}


def _user_metadata(item: Element, info: ObjectInfo) -> None:
    """MinIO's listing extension (ListObjectsV2 with `metadata=true`, the minio SDKs'
    include_user_meta): Content-Type, the encryption and each x-amz-meta-* header, named as
    HTTP headers; a name that cannot be an XML element name is left out."""
    meta = item.add("UserMetadata")
    meta.add("content-type", info.metadata.content_type)
    if info.encryption is not None:
        meta.add(*_SSE_HEADER[info.encryption.mode])
    for name, value in sorted(info.metadata.user_metadata.items()):
        tag = "X-Amz-Meta-" + "-".join(w[:1].upper() + w[1:] for w in name.lower().split("-"))
        if _XML_NAME.match(tag):
            meta.add(tag, value)


def _contents(root: Element, listing: _Listing, encode, ctx: Context, *, owner: bool,
              metadata: bool = False) -> None:
    for info in listing.keys:
        item = root.add("Contents")
        item.add("Key", encode(info.key))
        item.add("LastModified", iso8601(info.last_modified_ns))
        item.add("ETag", f'"{info.etag}"')
        item.add("Size", info.size)
        if owner:
            owner_element(item, ctx)
        item.add("StorageClass", "STANDARD")
        if metadata:
            _user_metadata(item, info)
    for common in listing.prefixes:
        root.add("CommonPrefixes").add("Prefix", encode(common))


async def list_objects_v1(ctx: Context) -> Response:
    bucket = bucket_of(ctx)
    args = ctx.req.args
    prefix, delimiter, marker = args.get("prefix", ""), args.get("delimiter", ""), \
        args.get("marker", "")
    max_keys = int_arg(ctx, "max-keys", MAX_KEYS, 0, MAX_KEYS, clamp=True)
    encode = _encoder(ctx)
    listing = await _walk(ctx, bucket, prefix, delimiter, marker, max_keys)
    root = Element("ListBucketResult")
    root.add("Name", bucket)
    root.add("Prefix", encode(prefix))
    root.add("Marker", encode(marker))
    root.add("MaxKeys", max_keys)
    if delimiter:
        root.add("Delimiter", encode(delimiter))
    if "encoding-type" in args:
        root.add("EncodingType", "url")
    root.add("IsTruncated", listing.truncated)
    if listing.truncated and delimiter:
        # S3 sends NextMarker only with a delimiter; clients use the last key otherwise
        root.add("NextMarker", encode(listing.last))
    _contents(root, listing, encode, ctx, owner=True)
    return xml_response(root)


def _token(last: str) -> str:
    return base64.urlsafe_b64encode(last.encode("utf-8", "surrogateescape")).decode()


def _untoken(token: str) -> str:
    try:
        raw = base64.urlsafe_b64decode(token.encode("ascii"))
        return raw.decode("utf-8")
    except (binascii.Error, ValueError, UnicodeError):
        raise S3Error("InvalidArgument", "The continuation token provided is incorrect.",
                      ArgumentName="continuation-token") from None


async def list_objects_v2(ctx: Context) -> Response:
    bucket = bucket_of(ctx)
    args = ctx.req.args
    if args.get("list-type") != "2":
        raise S3Error("InvalidArgument", "list-type must be 2.", ArgumentName="list-type")
    prefix, delimiter = args.get("prefix", ""), args.get("delimiter", "")
    start_after = args.get("start-after", "")
    token = args.get("continuation-token")
    after = _untoken(token) if token is not None else start_after
    max_keys = int_arg(ctx, "max-keys", MAX_KEYS, 0, MAX_KEYS, clamp=True)
    encode = _encoder(ctx)
    listing = await _walk(ctx, bucket, prefix, delimiter, after, max_keys)
    root = Element("ListBucketResult")
    root.add("Name", bucket)
    root.add("Prefix", encode(prefix))
    if token is not None:
        root.add("ContinuationToken", token)
    if start_after:
        root.add("StartAfter", encode(start_after))
    root.add("KeyCount", len(listing.keys) + len(listing.prefixes))
    root.add("MaxKeys", max_keys)
    if delimiter:
        root.add("Delimiter", encode(delimiter))
    if "encoding-type" in args:
        root.add("EncodingType", "url")
    root.add("IsTruncated", listing.truncated)
    if listing.truncated:
        root.add("NextContinuationToken", _token(listing.last))
    _contents(root, listing, encode, ctx, owner=args.get("fetch-owner") == "true",
              metadata=args.get("metadata") == "true")
    return xml_response(root)


async def list_object_versions(ctx: Context) -> Response:
    """GET ?versions: each key's only version, `null` and latest (minio's
    list_objects(include_version=True), rclone --s3-versions and `aws s3api
    list-object-versions` ask for it). A key marker alone lists the keys after it; with the
    version marker `null` it means the same, the key having no other version."""
    bucket = bucket_of(ctx)
    args = ctx.req.args
    prefix, delimiter = args.get("prefix", ""), args.get("delimiter", "")
    key_marker, version_marker = args.get("key-marker", ""), args.get("version-id-marker", "")
    if version_marker and not key_marker:
        raise S3Error("InvalidArgument", "A version-id marker cannot be specified without a key "
                      "marker.", ArgumentName="version-id-marker",
                      ArgumentValue=version_marker[:64])
    if version_marker not in ("", NULL_VERSION):
        raise S3Error("InvalidArgument", "Invalid version id specified",
                      ArgumentName="version-id-marker", ArgumentValue=version_marker[:64])
    max_keys = int_arg(ctx, "max-keys", MAX_KEYS, 0, MAX_KEYS, clamp=True)
    encode = _encoder(ctx)
    listing = await _walk(ctx, bucket, prefix, delimiter, key_marker, max_keys)
    root = Element("ListVersionsResult")
    root.add("Name", bucket)
    root.add("Prefix", encode(prefix))
    root.add("KeyMarker", encode(key_marker))
    root.add("VersionIdMarker", version_marker)
    root.add("MaxKeys", max_keys)
    if delimiter:
        root.add("Delimiter", encode(delimiter))
    if "encoding-type" in args:
        root.add("EncodingType", "url")
    root.add("IsTruncated", listing.truncated)
    if listing.truncated:
        root.add("NextKeyMarker", encode(listing.last))
        if listing.keys and listing.keys[-1].key == listing.last:
            root.add("NextVersionIdMarker", NULL_VERSION)
    for info in listing.keys:
        item = root.add("Version")
        item.add("Key", encode(info.key))
        item.add("VersionId", NULL_VERSION)
        item.add("IsLatest", True)
        item.add("LastModified", iso8601(info.last_modified_ns))
        item.add("ETag", f'"{info.etag}"')
        item.add("Size", info.size)
        owner_element(item, ctx)
        item.add("StorageClass", "STANDARD")
    for common in listing.prefixes:
        root.add("CommonPrefixes").add("Prefix", encode(common))
    return xml_response(root)
