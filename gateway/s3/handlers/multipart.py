"""Multipart uploads: Create, UploadPart, Complete, Abort, ListParts, ListMultipartUploads.

The object layer computes the `<md5-of-md5s>-N` ETag and enforces part sizes; this module
speaks the XML, checks part numbers, and builds the composite x-amz-checksum the upload asked
for (x-amz-checksum-algorithm on Create) from the parts' verified checksums.
"""

from __future__ import annotations

from gateway.objects.api import MAX_PART_NUMBER, MAX_PART_SIZE, CompletedPart, PartInfo

from ..body import open_body, read_small_body
from ..checksums import ALGORITHMS, composite_checksum, parse_content_md5
from ..errors import S3Error
from ..metadata import checksum_headers, put_metadata
from ..request import Context, Response
from ..sse import customer_key, encryption_headers, sse_for_write
from ..xml import Element, iso8601, parse_xml
from .common import bucket_of, int_arg, object_of, owner_element, xml_response

__all__ = [
    "abort_multipart_upload",
    "complete_multipart_upload",
    "create_multipart_upload",
    "list_multipart_uploads",
    "list_parts",
    "upload_part",
]

MAX_COMPLETE_BODY = 4 * 1024 * 1024  # 10,000 parts with checksums fit well inside
CHECKSUM_ALGORITHM = "x-amz-checksum-algorithm"
_CHECKSUM_TAGS = {f"Checksum{a}": a for a in ALGORITHMS}


async def create_multipart_upload(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    h = ctx.req.h
    algorithm = h.get(CHECKSUM_ALGORITHM, "").upper()
    if algorithm and algorithm not in ALGORITHMS:
        raise S3Error("InvalidRequest", f"Checksum algorithm {algorithm!r} is not supported.")
    # the algorithm is remembered as a key without value until Complete fills it
    metadata = put_metadata(h, {algorithm: ""} if algorithm else {})
    upload = await ctx.layer.create_multipart_upload(bucket, key, metadata=metadata,
                                                     sse=sse_for_write(h))
    root = Element("InitiateMultipartUploadResult")
    root.add("Bucket", bucket)
    root.add("Key", key)
    root.add("UploadId", upload.upload_id)
    headers = encryption_headers(upload.encryption, customer_key(h))
    if algorithm:
        headers[CHECKSUM_ALGORITHM] = algorithm
    return xml_response(root, headers=headers)


def _part_number(ctx: Context) -> int:
    return int_arg(ctx, "partNumber", 0, 1, MAX_PART_NUMBER)


async def upload_part(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    number = _part_number(ctx)
    upload_id = ctx.req.args["uploadId"]
    h = ctx.req.h
    md5 = parse_content_md5(h["content-md5"]) if "content-md5" in h else None
    await ctx.layer.get_upload(bucket, key, upload_id)
    body = open_body(ctx, limit=MAX_PART_SIZE)
    part = await ctx.layer.upload_part(bucket, key, upload_id, number, body,
                                       size=body.declared, sse_c=customer_key(h),
                                       expected_md5=md5, checksums=body.checksums)
    headers = {"etag": f'"{part.etag}"'}
    headers.update(checksum_headers(body.checksums))
    return Response(200, headers)


def _listed_parts(body: bytes) -> list[tuple[CompletedPart, dict[str, str]]]:
    doc = parse_xml(body, "CompleteMultipartUpload")
    listed = []
    for element in doc.findall("Part"):
        number_text = (element.findtext("PartNumber") or "").strip()
        etag = (element.findtext("ETag") or "").strip()
        if not number_text.isdigit() or not etag:
            raise S3Error("MalformedXML", "Each Part needs a PartNumber and an ETag.")
        number = int(number_text)
        if not 1 <= number <= MAX_PART_NUMBER:
            raise S3Error("InvalidArgument", "Part number must be an integer between 1 and "
                                             "10000, inclusive.")
        sums = {_CHECKSUM_TAGS[c.tag]: (c.text or "").strip() for c in element
                if c.tag in _CHECKSUM_TAGS}
        listed.append((CompletedPart(number, etag.strip('"').lower()), sums))
    if not listed:
        raise S3Error("MalformedXML", "CompleteMultipartUpload lists no parts.")
    return listed


async def _all_parts(ctx: Context, bucket: str, key: str, upload_id: str) -> dict[int, PartInfo]:
    parts: dict[int, PartInfo] = {}
    marker = 0
    while True:
        page, truncated = await ctx.layer.list_parts(bucket, key, upload_id,
                                                     part_number_marker=marker)
        parts.update((p.part_number, p) for p in page)
        if not truncated or not page:
            return parts
        marker = page[-1].part_number


async def _composite(ctx: Context, bucket: str, key: str, upload_id: str, algorithm: str,
                     listed: list[tuple[CompletedPart, dict[str, str]]]) -> dict[str, str]:
    """The checksum-of-checksums to store, when the upload asked for one and every listed
    part has its checksum; a part checksum the client lists must be the one we verified."""
    stored = await _all_parts(ctx, bucket, key, upload_id)
    values = []
    for part, sums in listed:
        info = stored.get(part.part_number)
        have = info.checksums.get(algorithm) if info else None
        given = sums.get(algorithm)
        if given and have and given != have:
            raise S3Error("InvalidPart", f"The {algorithm} checksum of part "
                                         f"{part.part_number} does not match.")
        values.append(have)
    if not algorithm or not all(values):
        return {}
    return {algorithm: composite_checksum(algorithm, values)}  # type: ignore[arg-type]


async def complete_multipart_upload(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    upload_id = ctx.req.args["uploadId"]
    upload = await ctx.layer.get_upload(bucket, key, upload_id)
    listed = _listed_parts(await read_small_body(ctx, MAX_COMPLETE_BODY))
    algorithm = next(iter(upload.metadata.checksums), "")
    checksums = await _composite(ctx, bucket, key, upload_id, algorithm, listed)
    info = await ctx.layer.complete_multipart_upload(
        bucket, key, upload_id, [part for part, _ in listed], sse_c=customer_key(ctx.req.h),
        checksums=checksums)
    root = Element("CompleteMultipartUploadResult")
    host = ctx.req.host or "localhost"
    root.add("Location", f"{ctx.req.scheme}://{host}/{bucket}/{key}")
    root.add("Bucket", bucket)
    root.add("Key", key)
    root.add("ETag", f'"{info.etag}"')
    for name, value in checksums.items():
        root.add(f"Checksum{name}", value)
    return xml_response(root, headers=encryption_headers(info.encryption))


async def abort_multipart_upload(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    await ctx.layer.abort_multipart_upload(bucket, key, ctx.req.args["uploadId"])
    return Response(204)


async def list_parts(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    upload_id = ctx.req.args["uploadId"]
    marker = int_arg(ctx, "part-number-marker", 0, 0)
    max_parts = int_arg(ctx, "max-parts", 1000, 0, 1000, clamp=True)
    upload = await ctx.layer.get_upload(bucket, key, upload_id)
    parts, truncated = ([], False)
    if max_parts:
        parts, truncated = await ctx.layer.list_parts(bucket, key, upload_id,
                                                      part_number_marker=marker,
                                                      limit=max_parts)
    root = Element("ListPartsResult")
    root.add("Bucket", bucket)
    root.add("Key", key)
    root.add("UploadId", upload_id)
    owner_element(root, ctx, "Initiator")
    owner_element(root, ctx)
    root.add("StorageClass", "STANDARD")
    root.add("PartNumberMarker", marker)
    root.add("NextPartNumberMarker", parts[-1].part_number if parts else marker)
    root.add("MaxParts", max_parts)
    root.add("IsTruncated", truncated)
    algorithm = next(iter(upload.metadata.checksums), "")
    if algorithm:
        root.add("ChecksumAlgorithm", algorithm)
    for part in parts:
        item = root.add("Part")
        item.add("PartNumber", part.part_number)
        item.add("LastModified", iso8601(part.last_modified_ns))
        item.add("ETag", f'"{part.etag}"')
        item.add("Size", part.size)
        for name, value in part.checksums.items():
            item.add(f"Checksum{name}", value)
    return xml_response(root)


async def list_multipart_uploads(ctx: Context) -> Response:
    bucket = bucket_of(ctx)
    args = ctx.req.args
    prefix, delimiter = args.get("prefix", ""), args.get("delimiter", "")
    key_marker, id_marker = args.get("key-marker", ""), args.get("upload-id-marker", "")
    max_uploads = int_arg(ctx, "max-uploads", 1000, 0, 1000, clamp=True)
    uploads, truncated = ([], False)
    if max_uploads:
        uploads, truncated = await ctx.layer.list_multipart_uploads(
            bucket, prefix=prefix, key_marker=key_marker, upload_id_marker=id_marker,
            limit=max_uploads)
    root = Element("ListMultipartUploadsResult")
    root.add("Bucket", bucket)
    root.add("KeyMarker", key_marker)
    root.add("UploadIdMarker", id_marker)
    root.add("NextKeyMarker", uploads[-1].key if uploads and truncated else "")
    root.add("NextUploadIdMarker", uploads[-1].upload_id if uploads and truncated else "")
    if delimiter:
        root.add("Delimiter", delimiter)
    root.add("Prefix", prefix)
    root.add("MaxUploads", max_uploads)
    root.add("IsTruncated", truncated)
    prefixes: list[str] = []
    for upload in uploads:
        cut = upload.key.find(delimiter, len(prefix)) if delimiter else -1
        if cut >= 0:
            common = upload.key[: cut + len(delimiter)]
            if common not in prefixes:
                prefixes.append(common)
            continue
        item = root.add("Upload")
        item.add("Key", upload.key)
        item.add("UploadId", upload.upload_id)
        owner_element(item, ctx, "Initiator")
        owner_element(item, ctx)
        item.add("StorageClass", "STANDARD")
        item.add("Initiated", iso8601(upload.initiated_ns))
    for common in prefixes:
        root.add("CommonPrefixes").add("Prefix", common)
    return xml_response(root)

