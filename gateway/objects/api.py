"""The object layer's contract: what S3 handlers may ask of it, and the values it returns.

S3 handlers (gateway/s3) speak HTTP and S3; they call an `ObjectLayer`. Two implement it:
`MemoryObjectLayer` (in-process, for unit tests of the S3 front) and the erasure-coded layer
over the storage nodes. Encryption happens inside the object layer: handlers pass parsed SSE
parameters (`SSEParams`) in and get `EncryptionInfo` back; plaintext in, plaintext out.

Bodies are streams: a handler passes an async iterator of bytes that is already de-chunked and
signature-checked. If the iterator raises, the write is abandoned and nothing becomes visible.
The body's digests (x-amz-content-sha256, chunk signatures, x-amz-checksum-*) are verified as
the iterator reaches its end, so an implementation must consume it to the end before it commits,
and must read `PutMetadata.checksums` (and `upload_part`'s `checksums`) only after that: values
sent as trailers are filled into those mappings as the body ends.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "MAX_OBJECT_SIZE",
    "MAX_PART_NUMBER",
    "MAX_PART_SIZE",
    "MIN_PART_SIZE",
    "BodyStream",
    "BucketInfo",
    "CompletedPart",
    "EncryptionInfo",
    "ListPage",
    "ObjectInfo",
    "ObjectLayer",
    "ObjectReader",
    "PartInfo",
    "PutMetadata",
    "SSECustomerKey",
    "SSEParams",
    "UploadInfo",
]

MAX_OBJECT_SIZE = 5 * 1024**4  # 5 TiB (multipart); a single PUT is limited to 5 GiB
MAX_SINGLE_PUT = 5 * 1024**3
MIN_PART_SIZE = 5 * 1024**2
MAX_PART_SIZE = 5 * 1024**3
MAX_PART_NUMBER = 10_000

SSEMode = Literal["SSE-S3", "SSE-KMS", "SSE-C"]


@dataclass(frozen=True)
class SSECustomerKey:
    """An SSE-C key sent by the client. Never stored, never logged."""

    key: bytes = field(repr=False)  # exactly 32 bytes
    key_md5: str  # base64 MD5 of the key, echoed in responses


@dataclass(frozen=True)
class SSEParams:
    """The encryption a write asks for (after bucket default / auto-encryption are applied)."""

    mode: SSEMode
    kms_key_id: str | None = None  # SSE-KMS; None = the KMS default key
    kms_context: Mapping[str, str] | None = None  # SSE-KMS x-amz-server-side-encryption-context
    customer_key: SSECustomerKey | None = None  # SSE-C


@dataclass(frozen=True)
class EncryptionInfo:
    """How a stored object is encrypted, as S3 response headers report it."""

    mode: SSEMode
    kms_key_id: str | None = None
    kms_context_b64: str | None = None  # the context as the client sent it, if it did


@dataclass(frozen=True)
class PutMetadata:
    """What a client stores beside the bytes. Header names are lower-case."""

    content_type: str = "binary/octet-stream"
    # content-encoding, content-disposition, content-language, cache-control, expires
    headers: Mapping[str, str] = field(default_factory=dict)
    user_metadata: Mapping[str, str] = field(default_factory=dict)  # x-amz-meta-<name> -> value
    # x-amz-checksum-* the client asked to store: algorithm ("CRC32", "CRC32C", "CRC64NVME",
    # "SHA1", "SHA256") -> base64 value. Filled in after the body is read when sent as a trailer.
    checksums: Mapping[str, str] = field(default_factory=dict)
    # the object's tag set (S3 object tagging), key -> value, checked by the S3 front
    tags: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    version_id: str
    size: int  # plaintext bytes, as S3 reports it
    etag: str  # without quotes: an MD5 hex, or "<md5-of-md5s>-<n>" for multipart
    last_modified_ns: int
    metadata: PutMetadata = field(default_factory=PutMetadata)
    encryption: EncryptionInfo | None = None
    parts: tuple[int, ...] = ()  # plaintext size of each part (multipart objects only)


@dataclass(frozen=True)
class BucketInfo:
    name: str
    created_ns: int


@dataclass(frozen=True)
class ListPage:
    """One page of a bucket listing in byte order of key; `truncated` when more keys follow."""

    objects: tuple[ObjectInfo, ...]
    truncated: bool


@dataclass(frozen=True)
class UploadInfo:
    bucket: str
    key: str
    upload_id: str
    initiated_ns: int
    metadata: PutMetadata = field(default_factory=PutMetadata)
    encryption: EncryptionInfo | None = None


@dataclass(frozen=True)
class PartInfo:
    part_number: int
    etag: str  # without quotes
    size: int  # plaintext bytes
    last_modified_ns: int
    checksums: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class CompletedPart:
    part_number: int
    etag: str  # as the client listed it, quotes removed


class BodyStream(Protocol):
    """A request body: plaintext chunks; raising ends the write with nothing stored."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...


class ObjectReader(Protocol):
    """An opened object version: its info is known; bytes are read on demand."""

    info: ObjectInfo

    def stream(self, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Plaintext bytes [start, start + length); the whole object when length is None."""
        ...

    async def close(self) -> None: ...


class ObjectLayer(Protocol):
    """Buckets, objects and multipart uploads. Every method may raise ObjectLayerError."""

    # buckets
    async def make_bucket(self, bucket: str) -> None: ...
    async def delete_bucket(self, bucket: str) -> None: ...
    async def head_bucket(self, bucket: str) -> BucketInfo: ...
    async def list_buckets(self) -> list[BucketInfo]: ...
    async def get_bucket_config(self, bucket: str, name: str) -> bytes | None: ...
    async def put_bucket_config(self, bucket: str, name: str, value: bytes | None) -> None: ...

    # objects
    async def put_object(
        self,
        bucket: str,
        key: str,
        body: BodyStream,
        *,
        size: int | None,  # declared plaintext size when known (Content-Length / decoded)
        metadata: PutMetadata,
        sse: SSEParams | None = None,
        expected_md5: bytes | None = None,  # Content-MD5: mismatch -> BadDigest, nothing stored
    ) -> ObjectInfo: ...

    async def open_object(
        self,
        bucket: str,
        key: str,
        *,
        version_id: str | None = None,
        sse_c: SSECustomerKey | None = None,
        read_ahead: bool = False,  # the caller reads from the start: fetch it with the metadata
    ) -> ObjectReader: ...

    async def delete_object(self, bucket: str, key: str) -> None:
        """Writes a delete marker. Deleting a missing key succeeds (S3 semantics)."""
        ...

    async def list_objects(
        self, bucket: str, *, prefix: str = "", start_after: str = "", limit: int = 1000,
        delimiter: str = "",
    ) -> ListPage:
        """Live keys after `start_after` in byte order. With a `delimiter`, a layer may return
        only the first key of each common prefix (a hint: the caller folds them anyway), and
        `truncated` then means more keys exist past that common prefix."""
        ...

    async def update_metadata(
        self, bucket: str, key: str, version_id: str, *, rewrap: SSEParams | None = None,
        sse_c: SSECustomerKey | None = None, metadata: PutMetadata | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Rewrites one version's metadata in place, its data untouched: `rewrap` re-seals an
        encrypted object's key exactly as asked (key rotation, or a CopyObject onto itself
        that changes the encryption; `sse_c` is its current customer key when SSE-C);
        `metadata` replaces the user metadata and sets the modification time to now; `tags`
        replaces the tag set (applied after `metadata`) and leaves the modification time.
        `version_id` "" is the current version. No key is needed to change tags."""
        ...

    async def object_tags(
        self, bucket: str, key: str, *, version_id: str | None = None,
    ) -> tuple[str, Mapping[str, str]]:
        """The version id and tag set of a version (the current one when None), read without
        opening its encryption key (S3 asks no SSE-C key for GetObjectTagging)."""
        ...

    # multipart
    async def create_multipart_upload(
        self, bucket: str, key: str, *, metadata: PutMetadata, sse: SSEParams | None = None
    ) -> UploadInfo: ...

    async def upload_part(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        part_number: int,
        body: BodyStream,
        *,
        size: int | None,
        sse_c: SSECustomerKey | None = None,
        expected_md5: bytes | None = None,
        checksums: Mapping[str, str] | None = None,
    ) -> PartInfo: ...

    async def list_parts(
        self, bucket: str, key: str, upload_id: str, *, part_number_marker: int = 0,
        limit: int = 1000,
    ) -> tuple[list[PartInfo], bool]: ...

    async def list_multipart_uploads(
        self, bucket: str, *, prefix: str = "", key_marker: str = "", upload_id_marker: str = "",
        limit: int = 1000,
    ) -> tuple[list[UploadInfo], bool]: ...

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None: ...

    async def complete_multipart_upload(
        self,
        bucket: str,
        key: str,
        upload_id: str,
        parts: list[CompletedPart],
        *,
        sse_c: SSECustomerKey | None = None,
        checksums: Mapping[str, str] | None = None,  # composite x-amz-checksum-* to store
    ) -> ObjectInfo: ...

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo: ...
