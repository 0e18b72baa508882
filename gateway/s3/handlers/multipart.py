"""Multipart uploads: Create, UploadPart, Complete, Abort, ListParts, ListMultipartUploads.

The object layer computes the `<md5-of-md5s>-N` ETag and enforces part sizes; this module
speaks the XML, checks part numbers, and builds the composite x-amz-checksum the upload asked
for (x-amz-checksum-algorithm on Create) from the parts' verified checksums.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from gateway.crypto.sse import SSEOperation
from gateway.objects.api import (
    MAX_PART_NUMBER,
    MAX_PART_SIZE,
    CompletedPart,
    PartInfo,
    UploadInfo,
)
from gateway.objects.errors import UploadNotFound

from ..body import open_body, read_small_body
from ..checksums import (
    ALGORITHMS,
    composite_checksum,
    full_object_crc,
    header_name,
    parse_content_md5,
)
from ..errors import S3Error
from ..metadata import checksum_headers, put_metadata
from ..request import Context, Response
from ..sse import encryption_headers, read_keys, write_sse
from ..xml import Element, iso8601, parse_xml
from .common import (
    bucket_of,
    check_write_headers,
    int_arg,
    object_of,
    owner_element,
    xml_response,
)

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
CHECKSUM_TYPE = "x-amz-checksum-type"
COMPOSITE, FULL_OBJECT = "COMPOSITE", "FULL_OBJECT"
_CHECKSUM_TAGS = {f"Checksum{a}": a for a in ALGORITHMS}


async def create_multipart_upload(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    check_write_headers(ctx)
    h = ctx.req.h
    algorithm = h.get(CHECKSUM_ALGORITHM, "").upper()
    if algorithm and algorithm not in ALGORITHMS:
        raise S3Error("InvalidRequest", f"Checksum algorithm {algorithm!r} is not supported.")
    kind = h.get(CHECKSUM_TYPE, COMPOSITE).upper()
    if kind not in (COMPOSITE, FULL_OBJECT) or (kind == FULL_OBJECT and (
            not algorithm or algorithm.startswith("SHA"))):
        raise S3Error("InvalidRequest", "The checksum type must be COMPOSITE, or FULL_OBJECT "
                                        "with a CRC algorithm.")
    # the upload remembers algorithm -> checksum type; Complete stores the real value
    metadata = put_metadata(h, {algorithm: kind} if algorithm else {})
    sse, request = await write_sse(ctx, bucket, SSEOperation.CREATE_MULTIPART_UPLOAD)
    upload = await ctx.layer.create_multipart_upload(bucket, key, metadata=metadata, sse=sse)
    root = Element("InitiateMultipartUploadResult")
    root.add("Bucket", bucket)
    root.add("Key", key)
    root.add("UploadId", upload.upload_id)
    headers = encryption_headers(upload.encryption, request.customer_key)
    if algorithm:
        headers[CHECKSUM_ALGORITHM] = algorithm
        headers[CHECKSUM_TYPE] = kind
    return xml_response(root, headers=headers)


def _part_number(ctx: Context) -> int:
    return int_arg(ctx, "partNumber", 0, 1, MAX_PART_NUMBER)


async def upload_part(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    number = _part_number(ctx)
    upload_id = ctx.req.args["uploadId"]
    h = ctx.req.h
    md5 = parse_content_md5(h["content-md5"]) if "content-md5" in h else None
    key_c = read_keys(ctx, SSEOperation.UPLOAD_PART).customer_key
    upload = await ctx.layer.get_upload(bucket, key, upload_id)
    body = open_body(ctx, limit=MAX_PART_SIZE)
    part = await ctx.layer.upload_part(bucket, key, upload_id, number, body,
                                       size=body.declared, sse_c=key_c,
                                       expected_md5=md5, checksums=body.checksums)
    headers = {"etag": f'"{part.etag}"'}
    headers.update(checksum_headers(body.checksums))
    headers.update(encryption_headers(upload.encryption, key_c))
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


async def _object_checksum(ctx: Context, bucket: str, key: str, upload_id: str,
                           algorithm: str, kind: str,
                           listed: list[tuple[CompletedPart, dict[str, str]]]) -> dict[str, str]:
    """The checksum to store for the whole object, when the upload asked for one and every
    listed part has its checksum: S3's checksum-of-checksums (COMPOSITE, `<b64>-N`) or the
    CRC of the whole object combined from the parts' CRCs (FULL_OBJECT). A part checksum the
    client lists must be the one we verified; a full-object value it sends must match."""
    stored = await _all_parts(ctx, bucket, key, upload_id)
    values: list[tuple[str, int]] = []
    for part, sums in listed:
        info = stored.get(part.part_number)
        have = info.checksums.get(algorithm) if info else None
        given = sums.get(algorithm)
        if given and have and given != have:
            raise S3Error("InvalidPart", f"The {algorithm} checksum of part "
                                         f"{part.part_number} does not match.")
        values.append((have or "", info.size if info else 0))
    if not algorithm or not all(v for v, _ in values):
        return {}
    if kind == FULL_OBJECT:
        whole = full_object_crc(algorithm, values)
        expected = ctx.req.h.get(header_name(algorithm))
        if expected is not None and expected.strip() != whole:
            raise S3Error("BadDigest", f"The {algorithm} you specified did not match the "
                                       "calculated checksum.")
        return {algorithm: whole}
    return {algorithm: composite_checksum(algorithm, [v for v, _ in values])}


async def complete_multipart_upload(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    upload_id = ctx.req.args["uploadId"]
    upload = await ctx.layer.get_upload(bucket, key, upload_id)
    listed = _listed_parts(await read_small_body(ctx, MAX_COMPLETE_BODY, body_checksums=False))
    algorithm, kind = next(iter(upload.metadata.checksums.items()), ("", COMPOSITE))
    checksums = await _object_checksum(ctx, bucket, key, upload_id, algorithm, kind, listed)
    key_c = read_keys(ctx, SSEOperation.COMPLETE_MULTIPART_UPLOAD).customer_key
    info = await ctx.layer.complete_multipart_upload(
        bucket, key, upload_id, [part for part, _ in listed], sse_c=key_c,
        checksums=checksums)
    root = Element("CompleteMultipartUploadResult")
    host = ctx.req.host or "localhost"
    root.add("Location", f"{ctx.req.scheme}://{host}/{bucket}/{key}")
    root.add("Bucket", bucket)
    root.add("Key", key)
    root.add("ETag", f'"{info.etag}"')
    for name, value in checksums.items():
        root.add(f"Checksum{name}", value)
        root.add("ChecksumType", kind)
    return xml_response(root, headers=encryption_headers(info.encryption, key_c))


class _RecentAborts:
    """Uploads this gateway aborted lately. S3 lets an abort be repeated for a short while,
    so a client retrying an abort whose answer it lost sees success, not NoSuchUpload."""

    def __init__(self, size: int = 10_000, ttl: float = 3600.0):
        self._seen: OrderedDict[tuple[str, str, str], float] = OrderedDict()
        self._size, self._ttl = size, ttl

    def add(self, entry: tuple[str, str, str]) -> None:
        self._seen[entry] = time.monotonic()
        while len(self._seen) > self._size:
            self._seen.popitem(last=False)

    def __contains__(self, entry: tuple[str, str, str]) -> bool:
        when = self._seen.get(entry)
        return when is not None and time.monotonic() - when < self._ttl


_RECENT_ABORTS = _RecentAborts()


async def abort_multipart_upload(ctx: Context) -> Response:
    bucket, key = object_of(ctx)
    entry = (bucket, key, ctx.req.args["uploadId"])
    try:
        await ctx.layer.abort_multipart_upload(*entry)
    except UploadNotFound:
        if entry not in _RECENT_ABORTS:
            raise
    _RECENT_ABORTS.add(entry)
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
    algorithm, kind = next(iter(upload.metadata.checksums.items()), ("", COMPOSITE))
    if algorithm:
        root.add("ChecksumAlgorithm", algorithm)
        root.add("ChecksumType", kind)
    for part in parts:
        item = root.add("Part")
        item.add("PartNumber", part.part_number)
        item.add("LastModified", iso8601(part.last_modified_ns))
        item.add("ETag", f'"{part.etag}"')
        item.add("Size", part.size)
        for name, value in part.checksums.items():
            item.add(f"Checksum{name}", value)
    return xml_response(root)


_PAST_PREFIX = "\U0010ffff"  # sorts after every key under a common prefix


async def _walk_uploads(ctx: Context, bucket: str, prefix: str, delimiter: str,
                        key_marker: str, id_marker: str, max_uploads: int,
                        ) -> tuple[list[tuple[str, UploadInfo | None]], bool]:
    """Up to `max_uploads` entries after the markers: uploads, and common prefixes that each
    count once (a later page never repeats one: it starts past the prefix)."""
    entries: list[tuple[str, UploadInfo | None]] = []
    if delimiter and key_marker.startswith(prefix) and key_marker.endswith(delimiter) and \
            key_marker.find(delimiter, len(prefix)) == len(key_marker) - len(delimiter):
        key_marker, id_marker = key_marker + _PAST_PREFIX, ""  # a NextKeyMarker prefix
    after, after_id, skip_to = key_marker, id_marker, ""
    while len(entries) <= max_uploads:
        uploads, more = await ctx.layer.list_multipart_uploads(
            bucket, prefix=prefix, key_marker=after, upload_id_marker=after_id,
            limit=max_uploads + 1 - len(entries))
        for upload in uploads:
            after, after_id = upload.key, upload.upload_id
            if upload.key <= skip_to:
                continue
            cut = upload.key.find(delimiter, len(prefix)) if delimiter else -1
            if cut < 0:
                entries.append((upload.key, upload))
            else:
                common = upload.key[: cut + len(delimiter)]
                if common > key_marker:
                    entries.append((common, None))
                skip_to = common + _PAST_PREFIX
            if len(entries) > max_uploads:
                break
        if skip_to > after:
            after, after_id = skip_to, ""
        if not more:
            break
    return entries[:max_uploads], len(entries) > max_uploads


async def list_multipart_uploads(ctx: Context) -> Response:
    bucket = bucket_of(ctx)
    args = ctx.req.args
    prefix, delimiter = args.get("prefix", ""), args.get("delimiter", "")
    key_marker, id_marker = args.get("key-marker", ""), args.get("upload-id-marker", "")
    max_uploads = int_arg(ctx, "max-uploads", 1000, 0, 1000, clamp=True)
    entries: list[tuple[str, UploadInfo | None]] = []
    truncated = False
    if max_uploads:
        entries, truncated = await _walk_uploads(ctx, bucket, prefix, delimiter, key_marker,
                                                 id_marker, max_uploads)
    else:
        await ctx.layer.head_bucket(bucket)
    last_name, last = entries[-1] if entries and truncated else ("", None)
    root = Element("ListMultipartUploadsResult")
    root.add("Bucket", bucket)
    root.add("KeyMarker", key_marker)
    root.add("UploadIdMarker", id_marker)
    root.add("NextKeyMarker", last_name)
    root.add("NextUploadIdMarker", last.upload_id if last is not None else "")
    if delimiter:
        root.add("Delimiter", delimiter)
    root.add("Prefix", prefix)
    root.add("MaxUploads", max_uploads)
    root.add("IsTruncated", truncated)
    for _, upload in entries:
        if upload is None:
            continue
        item = root.add("Upload")
        item.add("Key", upload.key)
        item.add("UploadId", upload.upload_id)
        owner_element(item, ctx, "Initiator")
        owner_element(item, ctx)
        item.add("StorageClass", "STANDARD")
        item.add("Initiated", iso8601(upload.initiated_ns))
    for name, upload in entries:
        if upload is None:
            root.add("CommonPrefixes").add("Prefix", name)
    return xml_response(root)
