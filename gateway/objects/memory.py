"""`MemoryObjectLayer`: the whole object-layer contract in this process's memory, for unit tests
of the S3 front and `python -m gateway --memory` (development only: nothing survives a restart,
nothing is encrypted; SSE requests fail with KMSNotConfigured as a KMS-less store must).

Bodies are consumed as streams and committed only after the iterator ended cleanly, so a body
that raises (bad digest, client gone) leaves nothing visible, exactly as on the real store.
"""

from __future__ import annotations

import asyncio
import bisect
import hashlib
import itertools
import secrets
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field, replace

from . import errors as oe
from .api import (
    MAX_PART_NUMBER,
    MAX_PART_SIZE,
    MAX_SINGLE_PUT,
    MIN_PART_SIZE,
    BodyStream,
    BucketInfo,
    CompletedPart,
    ListPage,
    ObjectInfo,
    PartInfo,
    PutMetadata,
    SSECustomerKey,
    SSEParams,
    UploadInfo,
)

__all__ = ["MemoryObjectLayer"]

_HASH_OFF_LOOP = 256 * 1024
_sequence = itertools.count()
_PROCESS_TAG = secrets.token_hex(4)


def _version_id() -> str:
    """Time-ordered, unique within the process (like the UUIDv7 the real store uses)."""
    return f"{time.time_ns():016x}-{next(_sequence):08x}-{_PROCESS_TAG}"


@dataclass
class _Version:
    info: ObjectInfo
    chunks: tuple[bytes, ...]


@dataclass
class _Bucket:
    info: BucketInfo
    keys: list[str] = field(default_factory=list)  # sorted
    objects: dict[str, _Version] = field(default_factory=dict)
    config: dict[str, bytes] = field(default_factory=dict)


@dataclass
class _Upload:
    info: UploadInfo
    parts: dict[int, tuple[PartInfo, tuple[bytes, ...]]] = field(default_factory=dict)


class _Reader:
    """An open object version; reads slice the stored chunks, a snapshot unaffected by later
    writes to the key."""

    def __init__(self, version: _Version):
        self.info = version.info
        self._chunks = version.chunks

    async def stream(self, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        end = self.info.size if length is None else min(self.info.size, start + length)
        offset = 0
        for chunk in self._chunks:
            chunk_end = offset + len(chunk)
            if chunk_end > start and offset < end:
                yield chunk[max(0, start - offset): min(len(chunk), end - offset)]
                await asyncio.sleep(0)  # let other requests run between chunks
            offset = chunk_end
            if offset >= end:
                break

    async def close(self) -> None:
        return None


async def _consume(body: BodyStream, size: int | None,
                   limit: int) -> tuple[tuple[bytes, ...], int, bytes]:
    """Read a body to its end: (chunks, size, md5). Raises before anything is kept."""
    md5 = hashlib.md5()
    chunks: list[bytes] = []
    total = 0
    async for chunk in body:
        if not chunk:
            continue
        total += len(chunk)
        if total > limit:
            raise oe.EntityTooLarge(f"body exceeds {limit} bytes")
        if len(chunk) >= _HASH_OFF_LOOP:
            await asyncio.to_thread(md5.update, chunk)
        else:
            md5.update(chunk)
        chunks.append(bytes(chunk))
    if size is not None and total != size:
        raise oe.IncompleteBody(f"received {total} of {size} bytes")
    return tuple(chunks), total, md5.digest()


class MemoryObjectLayer:
    """Buckets, objects, multipart uploads and bucket configuration, all in memory."""

    def __init__(self) -> None:
        self._buckets: dict[str, _Bucket] = {}
        self._uploads: dict[str, _Upload] = {}

    # ---- buckets ----

    def _bucket(self, name: str) -> _Bucket:
        try:
            return self._buckets[name]
        except KeyError:
            raise oe.BucketNotFound(name) from None

    async def make_bucket(self, bucket: str) -> None:
        if bucket in self._buckets:
            raise oe.BucketAlreadyExists(bucket)
        self._buckets[bucket] = _Bucket(BucketInfo(bucket, time.time_ns()))

    async def delete_bucket(self, bucket: str) -> None:
        if self._bucket(bucket).keys:
            raise oe.BucketNotEmpty(bucket)
        del self._buckets[bucket]
        for upload_id in [u for u, up in self._uploads.items() if up.info.bucket == bucket]:
            del self._uploads[upload_id]

    async def head_bucket(self, bucket: str) -> BucketInfo:
        return self._bucket(bucket).info

    async def list_buckets(self) -> list[BucketInfo]:
        return sorted((b.info for b in self._buckets.values()), key=lambda i: i.name)

    async def get_bucket_config(self, bucket: str, name: str) -> bytes | None:
        return self._bucket(bucket).config.get(name)

    async def put_bucket_config(self, bucket: str, name: str, value: bytes | None) -> None:
        config = self._bucket(bucket).config
        if value is None:
            config.pop(name, None)
        else:
            config[name] = value

    # ---- objects ----

    def _commit(self, bucket: _Bucket, info: ObjectInfo, chunks: tuple[bytes, ...]) -> None:
        if info.key not in bucket.objects:
            bisect.insort(bucket.keys, info.key)
        bucket.objects[info.key] = _Version(info, chunks)

    async def put_object(self, bucket: str, key: str, body: BodyStream, *, size: int | None,
                         metadata: PutMetadata, sse: SSEParams | None = None,
                         expected_md5: bytes | None = None) -> ObjectInfo:
        self._bucket(bucket)
        if sse is not None:
            raise oe.KMSNotConfigured("the in-memory object layer does not encrypt")
        if size is not None and size > MAX_SINGLE_PUT:
            raise oe.EntityTooLarge(f"{size} bytes exceeds the single PUT limit")
        chunks, total, md5 = await _consume(body, size, MAX_SINGLE_PUT)
        if expected_md5 is not None and md5 != expected_md5:
            raise oe.BadDigest("Content-MD5 does not match the body")
        target = self._bucket(bucket)  # the bucket may have gone while the body streamed
        info = ObjectInfo(bucket=bucket, key=key, version_id=_version_id(), size=total,
                          etag=md5.hex(), last_modified_ns=time.time_ns(),
                          metadata=replace(metadata, checksums=dict(metadata.checksums)))
        self._commit(target, info, chunks)
        return info

    async def open_object(self, bucket: str, key: str, *, version_id: str | None = None,
                          sse_c: SSECustomerKey | None = None,
                          read_ahead: bool = False) -> _Reader:
        version = self._bucket(bucket).objects.get(key)
        if version is None:
            raise oe.ObjectNotFound(f"{bucket}/{key}")
        if version_id is not None and version_id != version.info.version_id:
            raise oe.VersionNotFound(f"{bucket}/{key}?versionId={version_id}")
        if sse_c is not None:
            raise oe.SSENotApplicable("the object is not SSE-C encrypted")
        return _Reader(version)

    async def delete_object(self, bucket: str, key: str) -> None:
        target = self._bucket(bucket)
        if target.objects.pop(key, None) is not None:
            target.keys.pop(bisect.bisect_left(target.keys, key))

    async def list_objects(self, bucket: str, *, prefix: str = "", start_after: str = "",
                           limit: int = 1000, delimiter: str = "") -> ListPage:
        # the delimiter is only a hint (api.py): every key is returned and the caller folds
        target = self._bucket(bucket)
        keys = target.keys
        begin = max(bisect.bisect_right(keys, start_after), bisect.bisect_left(keys, prefix))
        found: list[ObjectInfo] = []
        index = begin
        while index < len(keys) and keys[index].startswith(prefix) and len(found) < limit:
            found.append(target.objects[keys[index]].info)
            index += 1
        truncated = index < len(keys) and keys[index].startswith(prefix)
        return ListPage(tuple(found), truncated)

    async def update_metadata(self, bucket: str, key: str, version_id: str, *,
                              rewrap: SSEParams | None = None,
                              sse_c: SSECustomerKey | None = None,
                              metadata: PutMetadata | None = None,
                              tags: Mapping[str, str] | None = None) -> ObjectInfo:
        reader = await self.open_object(bucket, key, version_id=version_id or None,
                                        sse_c=sse_c)
        if rewrap is not None:
            raise oe.KMSNotConfigured("the in-memory object layer does not encrypt")
        version = self._bucket(bucket).objects[key]
        if metadata is not None:
            version.info = replace(version.info, metadata=metadata,
                                   last_modified_ns=time.time_ns())
        if tags is not None:
            version.info = replace(version.info,
                                   metadata=replace(version.info.metadata, tags=dict(tags)))
        return version.info if metadata is not None or tags is not None else reader.info

    async def object_tags(self, bucket: str, key: str, *,
                          version_id: str | None = None) -> tuple[str, Mapping[str, str]]:
        info = (await self.open_object(bucket, key, version_id=version_id)).info
        return info.version_id, dict(info.metadata.tags)

    # ---- multipart ----

    def _upload(self, bucket: str, key: str, upload_id: str) -> _Upload:
        self._bucket(bucket)
        upload = self._uploads.get(upload_id)
        if upload is None or upload.info.bucket != bucket or upload.info.key != key:
            raise oe.UploadNotFound(upload_id)
        return upload

    async def create_multipart_upload(self, bucket: str, key: str, *, metadata: PutMetadata,
                                      sse: SSEParams | None = None) -> UploadInfo:
        self._bucket(bucket)
        if sse is not None:
            raise oe.KMSNotConfigured("the in-memory object layer does not encrypt")
        upload_id = secrets.token_urlsafe(24)
        info = UploadInfo(bucket, key, upload_id, time.time_ns(), metadata)
        self._uploads[upload_id] = _Upload(info)
        return info

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        return self._upload(bucket, key, upload_id).info

    async def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int,
                          body: BodyStream, *, size: int | None,
                          sse_c: SSECustomerKey | None = None,
                          expected_md5: bytes | None = None,
                          checksums: Mapping[str, str] | None = None) -> PartInfo:
        self._upload(bucket, key, upload_id)
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise oe.InvalidInput(f"part number {part_number} is out of range")
        if sse_c is not None:
            raise oe.SSENotApplicable("the upload is not SSE-C encrypted")
        if size is not None and size > MAX_PART_SIZE:
            raise oe.EntityTooLarge(f"{size} bytes exceeds the part size limit")
        chunks, total, md5 = await _consume(body, size, MAX_PART_SIZE)
        if expected_md5 is not None and md5 != expected_md5:
            raise oe.BadDigest("Content-MD5 does not match the body")
        upload = self._upload(bucket, key, upload_id)  # aborted while the part streamed?
        part = PartInfo(part_number, md5.hex(), total, time.time_ns(), dict(checksums or {}))
        upload.parts[part_number] = (part, chunks)
        return part

    async def list_parts(self, bucket: str, key: str, upload_id: str, *,
                         part_number_marker: int = 0,
                         limit: int = 1000) -> tuple[list[PartInfo], bool]:
        upload = self._upload(bucket, key, upload_id)
        numbers = sorted(n for n in upload.parts if n > part_number_marker)
        return [upload.parts[n][0] for n in numbers[:limit]], len(numbers) > limit

    async def list_multipart_uploads(self, bucket: str, *, prefix: str = "",
                                     key_marker: str = "", upload_id_marker: str = "",
                                     limit: int = 1000) -> tuple[list[UploadInfo], bool]:
        self._bucket(bucket)
        uploads = sorted((u.info for u in self._uploads.values()
                          if u.info.bucket == bucket and u.info.key.startswith(prefix)),
                         key=lambda i: (i.key, i.initiated_ns, i.upload_id))

        def after_marker(info: UploadInfo) -> bool:
            if not key_marker:
                return True
            if info.key != key_marker:
                return info.key > key_marker
            if not upload_id_marker:
                return False
            return (info.initiated_ns, info.upload_id) > self._upload_order(upload_id_marker)

        selected = [u for u in uploads if after_marker(u)]
        return selected[:limit], len(selected) > limit

    def _upload_order(self, upload_id: str) -> tuple[int, str]:
        upload = self._uploads.get(upload_id)
        return (upload.info.initiated_ns, upload_id) if upload else (0, upload_id)

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        self._upload(bucket, key, upload_id)
        del self._uploads[upload_id]

    async def complete_multipart_upload(self, bucket: str, key: str, upload_id: str,
                                        parts: list[CompletedPart], *,
                                        sse_c: SSECustomerKey | None = None,
                                        checksums: Mapping[str, str] | None = None,
                                        ) -> ObjectInfo:
        upload = self._upload(bucket, key, upload_id)
        if not parts:
            raise oe.InvalidPart("no parts were listed")
        chosen: list[tuple[PartInfo, tuple[bytes, ...]]] = []
        previous = 0
        for listed in parts:
            if listed.part_number <= previous:
                raise oe.InvalidPartOrder(f"part {listed.part_number} after {previous}")
            previous = listed.part_number
            stored = upload.parts.get(listed.part_number)
            if stored is None or stored[0].etag != listed.etag.strip('"').lower():
                raise oe.InvalidPart(f"part {listed.part_number} is missing or has another ETag")
            chosen.append(stored)
        for part, _ in chosen[:-1]:
            if part.size < MIN_PART_SIZE:
                raise oe.EntityTooSmall(f"part {part.part_number} is {part.size} bytes")
        md5s = b"".join(bytes.fromhex(p.etag) for p, _ in chosen)
        etag = f"{hashlib.md5(md5s).hexdigest()}-{len(chosen)}"
        metadata = replace(upload.info.metadata, checksums=dict(checksums or {}))
        info = ObjectInfo(bucket=bucket, key=key, version_id=_version_id(),
                          size=sum(p.size for p, _ in chosen), etag=etag,
                          last_modified_ns=time.time_ns(), metadata=metadata,
                          parts=tuple(p.size for p, _ in chosen))
        del self._uploads[upload_id]
        self._commit(self._bucket(bucket), info,
                     tuple(itertools.chain.from_iterable(c for _, c in chosen)))
        return info
