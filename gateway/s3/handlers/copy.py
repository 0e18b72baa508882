"""Server-side copies: CopyObject (metadata and tagging directives COPY/REPLACE, copy-source
conditions) and UploadPartCopy (with x-amz-copy-source-range). Bytes stream from the source
reader straight into the destination write; nothing is buffered whole."""

from __future__ import annotations

import re
from dataclasses import replace
from urllib.parse import unquote

from gateway.crypto.sse import SSEOperation
from gateway.objects.api import (
    MAX_PART_SIZE,
    MAX_SINGLE_PUT,
    ObjectInfo,
    ObjectReader,
    PutMetadata,
    SSECustomerKey,
    SSEParams,
)
from gateway.objects.errors import SSECKeyRequired

from ..conditions import check_conditions
from ..errors import S3Error
from ..metadata import put_metadata
from ..names import check_bucket_name, check_key
from ..request import Context, Response
from ..sse import encryption_headers, read_keys, write_sse
from ..tagging import parse_tagging_header
from ..xml import Element, iso8601
from .common import check_write_headers, int_arg, object_of, version_arg, xml_response

__all__ = ["copy_object", "open_copy_source", "upload_part_copy"]

COPY_CONDITION_PREFIX = "x-amz-copy-source-if-"
_COPY_RANGE_RE = re.compile(r"^bytes=(\d+)-(\d+)$")


def _parse_copy_source(value: str) -> tuple[str, str, str | None]:
    raw, _, query = value.partition("?")
    version = None
    for item in query.split("&"):
        name, _, arg = item.partition("=")
        if name == "versionId" and arg:
            version = version_arg(unquote(arg))
    try:
        path = unquote(raw, errors="strict").lstrip("/")
    except UnicodeDecodeError:
        path = ""
    bucket, _, key = path.partition("/")
    if not bucket or not key:
        raise S3Error("InvalidArgument", "Copy Source must mention the source bucket and key: "
                                         "sourcebucket/sourcekey.",
                      ArgumentName="x-amz-copy-source", ArgumentValue=value[:256])
    check_bucket_name(bucket)
    check_key(key)
    return bucket, key, version


async def open_copy_source(ctx: Context, source_key: SSECustomerKey | None,
                           ) -> tuple[ObjectReader, str, str]:
    """The opened source object of a copy, its conditions checked; the caller closes it.
    `source_key`: the x-amz-copy-source-server-side-encryption-customer-* key."""
    bucket, key, version = _parse_copy_source(ctx.req.h["x-amz-copy-source"])
    try:
        reader = await ctx.layer.open_object(bucket, key, version_id=version, sse_c=source_key)
    except SSECKeyRequired:  # MinIO's answer when the copy-source key headers are missing
        raise S3Error("InvalidArgument", "Requests specifying Server Side Encryption with "
                                         "Customer provided keys must provide a valid "
                                         "encryption algorithm.") from None
    try:
        check_conditions(ctx.req.h, reader.info, prefix=COPY_CONDITION_PREFIX,
                         copy_source=True)
    except BaseException:
        await reader.close()
        raise
    return reader, bucket, key


def _directive(ctx: Context, header: str) -> str:
    value = ctx.req.h.get(header, "COPY").upper()
    if value not in ("COPY", "REPLACE"):
        what = "metadata" if "metadata" in header else "tagging"
        raise S3Error("InvalidArgument", f"Unknown {what} directive.",
                      ArgumentName=header, ArgumentValue=value[:32])
    return value


def _copied_tags(ctx: Context, source: ObjectInfo) -> dict[str, str]:
    """The destination's tag set: the source's (COPY, the default) or x-amz-tagging's."""
    if _directive(ctx, "x-amz-tagging-directive") == "REPLACE":
        return parse_tagging_header(ctx.req.h.get("x-amz-tagging", ""))
    return dict(source.metadata.tags)


def _changes_something(ctx: Context) -> bool:
    h = ctx.req.h
    return (h.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
            or h.get("x-amz-tagging-directive", "COPY").upper() == "REPLACE"
            or any(name.startswith("x-amz-server-side-encryption") for name in h)
            or "x-amz-storage-class" in h)


async def copy_object(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    check_write_headers(ctx)
    directive = _directive(ctx, "x-amz-metadata-directive")
    _directive(ctx, "x-amz-tagging-directive")
    sse, request = await write_sse(ctx, bucket, SSEOperation.COPY_OBJECT)
    reader, src_bucket, src_key = await open_copy_source(ctx, request.copy_source_key)
    try:
        source = reader.info
        onto_itself = (src_bucket, src_key) == (bucket, key)
        if onto_itself and not _changes_something(ctx):
            raise S3Error("InvalidRequest",
                          "This copy request is illegal because it is trying to copy an object "
                          "to itself without changing the object's metadata, storage class, "
                          "website redirect location or encryption attributes.")
        if onto_itself and source.encryption is not None and sse is not None:
            # re-key in place: the object key (so the data) stays, only its seal changes
            info = await _rekey(ctx, source, directive, sse, request.copy_source_key)
        else:
            info = await _copy_data(ctx, reader, bucket, key, directive, sse)
    finally:
        await reader.close()
    root = Element("CopyObjectResult")
    root.add("LastModified", iso8601(info.last_modified_ns))
    root.add("ETag", f'"{info.etag}"')
    return xml_response(root, headers=encryption_headers(info.encryption,
                                                         request.customer_key))


async def _copy_data(ctx: Context, reader: ObjectReader, bucket: str, key: str,
                     directive: str, sse: SSEParams | None) -> ObjectInfo:
    source = reader.info
    if source.size > MAX_SINGLE_PUT:
        raise S3Error("InvalidRequest", "The specified copy source is larger than the "
                                        "maximum allowable size for a copy source: "
                                        f"{MAX_SINGLE_PUT}")
    if directive == "REPLACE":
        metadata = put_metadata(ctx.req.h)
    else:
        # a composite (multipart) checksum does not describe the single-part copy
        kept = {a: v for a, v in source.metadata.checksums.items() if v and "-" not in v}
        metadata = replace(source.metadata, checksums=kept)
    metadata = replace(metadata, tags=_copied_tags(ctx, source))
    return await ctx.layer.put_object(bucket, key, reader.stream(), size=source.size,
                                      metadata=metadata, sse=sse)


async def _rekey(ctx: Context, source: ObjectInfo, directive: str, sse: SSEParams,
                 source_key: SSECustomerKey | None) -> ObjectInfo:
    metadata: PutMetadata = source.metadata
    if directive == "REPLACE":  # the data is unchanged, so its checksums still hold
        metadata = replace(put_metadata(ctx.req.h), checksums=dict(source.metadata.checksums))
    metadata = replace(metadata, tags=_copied_tags(ctx, source))
    return await ctx.layer.update_metadata(source.bucket, source.key, source.version_id,
                                           rewrap=sse, sse_c=source_key, metadata=metadata)


async def upload_part_copy(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    number = int_arg(ctx, "partNumber", 0, 1, 10_000)
    upload_id = ctx.req.args["uploadId"]
    keys = read_keys(ctx, SSEOperation.UPLOAD_PART_COPY)
    upload = await ctx.layer.get_upload(bucket, key, upload_id)
    reader, _, _ = await open_copy_source(ctx, keys.copy_source_key)
    try:
        size = reader.info.size
        start, length = 0, size
        text = ctx.req.h.get("x-amz-copy-source-range")
        if text is not None:
            match = _COPY_RANGE_RE.match(text.strip())
            if not match:
                raise S3Error("InvalidArgument", "The x-amz-copy-source-range value must be of "
                                                 "the form bytes=first-last.")
            first, last = int(match.group(1)), int(match.group(2))
            if first > last or last >= size:
                raise S3Error("InvalidArgument", "Range specified is not valid for source "
                                                 f"object of size: {size}")
            start, length = first, last - first + 1
        if length > MAX_PART_SIZE:
            raise S3Error("EntityTooLarge")
        part = await ctx.layer.upload_part(bucket, key, upload_id, number,
                                           reader.stream(start, length), size=length,
                                           sse_c=keys.customer_key)
    finally:
        await reader.close()
    root = Element("CopyPartResult")
    root.add("LastModified", iso8601(part.last_modified_ns))
    root.add("ETag", f'"{part.etag}"')
    return xml_response(root, headers=encryption_headers(upload.encryption,
                                                         keys.customer_key))
