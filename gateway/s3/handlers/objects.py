"""Object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects."""

from __future__ import annotations

from gateway.crypto.sse import SSEOperation
from gateway.objects.api import MAX_SINGLE_PUT, ObjectInfo, ObjectReader, SSECustomerKey
from gateway.objects.errors import ObjectLayerError

from ..body import open_body, read_small_body
from ..checksums import parse_content_md5
from ..conditions import ByteRange, NotModified, check_conditions, parse_range
from ..errors import S3Error, to_s3_error
from ..metadata import checksum_headers, http_date, object_headers, put_metadata
from ..names import check_key
from ..request import Context, Response
from ..sse import encryption_headers, read_keys, write_sse
from ..xml import Element, parse_xml
from .common import (
    bucket_of,
    check_write_headers,
    int_arg,
    object_of,
    version_arg,
    xml_response,
)

__all__ = ["delete_object", "delete_objects", "get_object", "head_object", "put_object"]

MAX_DELETE_BODY = 2 * 1024 * 1024  # 1,000 keys of up to 1 KiB, with their XML
MAX_DELETE_KEYS = 1000
RESPONSE_OVERRIDES = {
    "response-content-type": "content-type",
    "response-content-language": "content-language",
    "response-expires": "expires",
    "response-cache-control": "cache-control",
    "response-content-disposition": "content-disposition",
    "response-content-encoding": "content-encoding",
}


async def put_object(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    check_write_headers(ctx)
    h = ctx.req.h
    md5 = parse_content_md5(h["content-md5"]) if "content-md5" in h else None
    sse, request = await write_sse(ctx, bucket, SSEOperation.PUT_OBJECT)
    body = open_body(ctx, limit=MAX_SINGLE_PUT)
    metadata = put_metadata(h, body.checksums)
    info = await ctx.layer.put_object(bucket, key, body, size=body.declared, metadata=metadata,
                                      sse=sse, expected_md5=md5)
    headers = {"etag": f'"{info.etag}"'}
    headers.update(checksum_headers(body.checksums))
    headers.update(encryption_headers(info.encryption, request.customer_key))
    return Response(200, headers)


async def get_object(ctx: Context) -> Response:
    return await _serve(ctx, head=False)


async def head_object(ctx: Context) -> Response:
    return await _serve(ctx, head=True)


READ_AHEAD_MIN = 1 << 20  # a range from byte 0 this long is worth its start read ahead


def _from_start(ctx: Context) -> bool:
    """The GET reads the object from its first byte, and not just a little of it: the layer
    may fetch that start with the metadata (open_object's read_ahead)."""
    spec = ctx.req.h.get("range")
    if spec is None:
        return True
    first, _, last = spec.replace(" ", "").removeprefix("bytes=").partition("-")
    return first == "0" and (not last or (last.isdigit() and int(last) >= READ_AHEAD_MIN - 1))


def _part_range(ctx: Context, info: ObjectInfo) -> tuple[ByteRange | None, dict[str, str]]:
    """`?partNumber=N`: the byte range of part N (the whole object for a single-part one)."""
    number = int_arg(ctx, "partNumber", 0, 1, 10_000)
    sizes = info.parts or (info.size,)
    if number > len(sizes):
        raise S3Error("InvalidRange" if info.size else "InvalidArgument",
                      "The requested partnumber is not satisfiable.",
                      headers={"content-range": f"bytes */{info.size}"})
    start = sum(sizes[: number - 1])
    headers = {"x-amz-mp-parts-count": str(len(sizes))} if info.parts else {}
    if sizes[number - 1] == 0:
        return None, headers
    return ByteRange(start, sizes[number - 1]), headers


async def _serve(ctx: Context, *, head: bool) -> Response:
    bucket, key = object_of(ctx)
    key_c = read_keys(ctx, SSEOperation.HEAD_OBJECT if head else
                      SSEOperation.GET_OBJECT).customer_key
    read_ahead = not head and "partNumber" not in ctx.req.args and _from_start(ctx)
    reader = await ctx.layer.open_object(bucket, key,
                                         version_id=version_arg(ctx.req.args.get("versionId")),
                                         sse_c=key_c, read_ahead=read_ahead)
    try:
        return _respond(ctx, reader, head=head, key_c=key_c)
    except BaseException:
        await reader.close()
        raise


def _respond(ctx: Context, reader: ObjectReader, *, head: bool,
             key_c: SSECustomerKey | None) -> Response:
    info = reader.info
    h = ctx.req.h
    try:
        check_conditions(h, info)
    except NotModified:
        return Response(304, {"etag": f'"{info.etag}"',
                              "last-modified": http_date(info.last_modified_ns)},
                        on_close=reader.close)
    extra: dict[str, str] = {}
    if "partNumber" in ctx.req.args:
        byte_range, extra = _part_range(ctx, info)
    else:
        byte_range = parse_range(h.get("range"), info.size)
    whole = byte_range is None and "partNumber" not in ctx.req.args
    checksum_mode = h.get("x-amz-checksum-mode", "").upper() == "ENABLED"
    headers = object_headers(info, with_checksums=checksum_mode and whole)
    headers.update(extra)
    headers.update(encryption_headers(info.encryption, key_c))
    for param, header in RESPONSE_OVERRIDES.items():
        if param in ctx.req.args:
            headers[header] = ctx.req.args[param]
    status, start, length = 200, 0, info.size
    if byte_range is not None:
        status, start, length = 206, byte_range.start, byte_range.length
        headers["content-range"] = byte_range.content_range(info.size)
    stream = None if head else reader.stream(start, length)
    return Response(status, headers, stream=stream, length=length, on_close=reader.close)


async def delete_object(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    await ctx.layer.delete_object(bucket, key)
    return Response(204)


async def delete_objects(ctx: Context) -> Response:
    bucket = bucket_of(ctx)
    body = await read_small_body(ctx, MAX_DELETE_BODY, require_md5=True)
    doc = parse_xml(body, "Delete")
    quiet = (doc.findtext("Quiet") or "").strip().lower() == "true"
    keys = [(obj.findtext("Key") or "") for obj in doc.findall("Object")]
    if not keys or len(keys) > MAX_DELETE_KEYS or any(k == "" for k in keys):
        raise S3Error("MalformedXML", "Delete needs 1 to 1000 Object elements, each with a Key.")
    await ctx.layer.head_bucket(bucket)
    root = Element("DeleteResult")
    for key in keys:
        try:
            check_key(key)
            await ctx.layer.delete_object(bucket, key)
        except (S3Error, ObjectLayerError) as exc:
            error = exc if isinstance(exc, S3Error) else to_s3_error(exc)
            item = root.add("Error")
            item.add("Key", key)
            item.add("Code", error.code)
            item.add("Message", error.message)
            continue
        if not quiet:
            root.add("Deleted").add("Key", key)
    return xml_response(root)

