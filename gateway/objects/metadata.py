"""The metadata blob the gateway stores with each version, upload and part (nodes keep it opaque).

Compact JSON (sorted keys, short names), identical on every node of a version, so any node's
copy describes the whole object: sizes, ETag, content type and user metadata, checksums, the
encryption record (an opaque dict owned by gateway/crypto), the erasure record (k, m, block
size, hash algorithm, set and shard distribution) and the parts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from gateway.crypto.metadata import EncryptionMetadata
from gateway.erasure import Geometry
from gateway.objects.api import EncryptionInfo, ObjectInfo, PartInfo, PutMetadata, UploadInfo

__all__ = [
    "FORMAT_VERSION",
    "ErasureRecord",
    "MetadataError",
    "ObjectMeta",
    "PartMeta",
    "PartRecord",
    "UploadMeta",
    "encryption_info",
    "listed_object",
]

FORMAT_VERSION = 1


class MetadataError(ValueError):
    """A stored blob cannot be parsed: written by an unknown format or damaged. Not retryable."""


def _dumps(doc: Mapping[str, Any]) -> bytes:
    return json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()


def _loads(blob: bytes, what: str) -> dict[str, Any]:
    try:
        doc = json.loads(blob)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MetadataError(f"{what} metadata is not valid JSON: {exc}") from exc
    if not isinstance(doc, dict) or doc.get("v") != FORMAT_VERSION:
        raise MetadataError(f"{what} metadata has unknown format {doc.get('v')!r}"
                            if isinstance(doc, dict) else f"{what} metadata is not an object")
    return doc


def _put_metadata_doc(m: PutMetadata) -> dict[str, Any]:
    doc = {"ct": m.content_type, "hdr": dict(m.headers), "um": dict(m.user_metadata),
           "ck": dict(m.checksums)}
    if m.tags:  # absent when untagged: blobs of untagged objects stay as they were
        doc["tg"] = dict(m.tags)
    return doc


def _put_metadata(doc: Mapping[str, Any]) -> PutMetadata:
    return PutMetadata(content_type=doc.get("ct", "binary/octet-stream"),
                       headers=dict(doc.get("hdr", {})), user_metadata=dict(doc.get("um", {})),
                       checksums=dict(doc.get("ck", {})), tags=dict(doc.get("tg", {})))


def encryption_info(record: Mapping[str, Any] | None) -> EncryptionInfo | None:
    """What S3 reports about an encryption record (gateway/crypto's EncryptionMetadata dict);
    None for an unencrypted object. ObjectTampered if the record is malformed."""
    if not record:
        return None
    return EncryptionMetadata.from_dict(record).info()


@dataclass(frozen=True)
class ErasureRecord:
    """How a version was erasure-coded and where its shards went."""

    data_shards: int
    parity_shards: int
    block_size: int
    hash_algorithm: str
    set_index: int
    distribution: tuple[str, ...]  # distribution[i] = node that holds shard i

    @property
    def geometry(self) -> Geometry:
        return Geometry(self.data_shards, self.parity_shards, self.block_size,
                        self.hash_algorithm)

    def to_doc(self) -> dict[str, Any]:
        return {"k": self.data_shards, "m": self.parity_shards, "bs": self.block_size,
                "h": self.hash_algorithm, "set": self.set_index, "dist": list(self.distribution)}

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> ErasureRecord:
        return cls(int(doc["k"]), int(doc["m"]), int(doc["bs"]), str(doc["h"]),
                   int(doc["set"]), tuple(doc["dist"]))


@dataclass(frozen=True)
class PartRecord:
    """One part of a version: plaintext size, stored (erasure-coded) size, ETag, shard data id."""

    number: int
    size: int
    stored_size: int
    etag: str
    data_id: str
    encryption: Mapping[str, Any] | None = None  # per-part crypto material (e.g. nonce)

    def to_doc(self) -> dict[str, Any]:
        doc = {"n": self.number, "s": self.size, "ss": self.stored_size, "e": self.etag,
               "d": self.data_id}
        if self.encryption:
            doc["enc"] = dict(self.encryption)
        return doc

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> PartRecord:
        return cls(int(doc["n"]), int(doc["s"]), int(doc["ss"]), str(doc["e"]), str(doc["d"]),
                   doc.get("enc"))


@dataclass(frozen=True)
class ObjectMeta:
    """Everything a reader needs to know about one version, as stored on every node."""

    size: int
    etag: str
    mod_time_ns: int
    erasure: ErasureRecord
    metadata: PutMetadata = field(default_factory=PutMetadata)
    parts: tuple[PartRecord, ...] = ()
    multipart: bool = False
    encryption: Mapping[str, Any] | None = None
    inline_hashes: tuple[bytes, ...] = ()  # shard i's hash, for an object stored inline
    inline_stored_size: int | None = None  # stored bytes of an inline object, when != size
    delete_marker: bool = False

    @property
    def is_inline(self) -> bool:
        return not self.parts and not self.delete_marker

    @property
    def stored_size(self) -> int:
        if self.parts:
            return sum(p.stored_size for p in self.parts)
        return self.size if self.inline_stored_size is None else self.inline_stored_size

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"v": FORMAT_VERSION, "size": self.size, "etag": self.etag,
                               "mt": self.mod_time_ns, "ec": self.erasure.to_doc()}
        if self.delete_marker:
            doc["dm"] = True
            return _dumps(doc)
        doc["meta"] = _put_metadata_doc(self.metadata)
        doc["parts"] = [p.to_doc() for p in self.parts]
        if self.multipart:
            doc["mp"] = True
        if self.encryption:
            doc["enc"] = dict(self.encryption)
        if self.inline_hashes:
            doc["ih"] = [h.hex() for h in self.inline_hashes]
        if self.inline_stored_size is not None:
            doc["iss"] = self.inline_stored_size
        return _dumps(doc)

    @classmethod
    def from_bytes(cls, blob: bytes) -> ObjectMeta:
        doc = _loads(blob, "object")
        try:
            return cls(
                size=int(doc["size"]), etag=str(doc["etag"]), mod_time_ns=int(doc["mt"]),
                erasure=ErasureRecord.from_doc(doc["ec"]),
                metadata=_put_metadata(doc.get("meta", {})),
                parts=tuple(PartRecord.from_doc(p) for p in doc.get("parts", [])),
                multipart=bool(doc.get("mp", False)), encryption=doc.get("enc"),
                inline_hashes=tuple(bytes.fromhex(h) for h in doc.get("ih", [])),
                inline_stored_size=doc.get("iss"),
                delete_marker=bool(doc.get("dm", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"object metadata is incomplete: {exc!r}") from exc

    def object_info(self, bucket: str, key: str, version_id: str) -> ObjectInfo:
        return ObjectInfo(
            bucket=bucket, key=key, version_id=version_id, size=self.size, etag=self.etag,
            last_modified_ns=self.mod_time_ns, metadata=self.metadata,
            encryption=encryption_info(self.encryption),
            parts=tuple(p.size for p in self.parts) if self.multipart else (),
        )


def listed_object(blob: bytes, bucket: str, key: str, version_id: str) -> \
        tuple[ObjectInfo, Mapping[str, Any] | None]:
    """What a listing reports of a stored version, and its encryption record (for the
    sealed ETag), read without building the erasure and part records it does not need."""
    doc = _loads(blob, "object")
    try:
        parts = tuple(int(p["s"]) for p in doc.get("parts", [])) if doc.get("mp") else ()
        record = doc.get("enc")
        return ObjectInfo(bucket=bucket, key=key, version_id=version_id, size=int(doc["size"]),
                          etag=str(doc["etag"]), last_modified_ns=int(doc["mt"]),
                          metadata=_put_metadata(doc.get("meta", {})),
                          encryption=encryption_info(record), parts=parts), record
    except (KeyError, TypeError, ValueError) as exc:
        raise MetadataError(f"object metadata is incomplete: {exc!r}") from exc


@dataclass(frozen=True)
class UploadMeta:
    """What CreateMultipartUpload stores with an upload."""

    initiated_ns: int
    metadata: PutMetadata = field(default_factory=PutMetadata)
    encryption: Mapping[str, Any] | None = None
    # the geometry every part and the completed object use, fixed at creation (a parity
    # upgrade then holds for the whole upload); 0 = not recorded: the set's configured one
    data_shards: int = 0
    parity_shards: int = 0

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"v": FORMAT_VERSION, "it": self.initiated_ns,
                               "meta": _put_metadata_doc(self.metadata)}
        if self.encryption:
            doc["enc"] = dict(self.encryption)
        if self.data_shards:
            doc["ec"] = {"k": self.data_shards, "m": self.parity_shards}
        return _dumps(doc)

    @classmethod
    def from_bytes(cls, blob: bytes) -> UploadMeta:
        doc = _loads(blob, "upload")
        ec = doc.get("ec") or {}
        try:
            k, m = int(ec.get("k", 0)), int(ec.get("m", 0))
        except (AttributeError, TypeError, ValueError) as exc:
            raise MetadataError(f"upload metadata has a bad geometry: {ec!r}") from exc
        return cls(int(doc.get("it", 0)), _put_metadata(doc.get("meta", {})), doc.get("enc"),
                   k, m)

    def upload_info(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        return UploadInfo(bucket=bucket, key=key, upload_id=upload_id,
                          initiated_ns=self.initiated_ns, metadata=self.metadata,
                          encryption=encryption_info(self.encryption))


@dataclass(frozen=True)
class PartMeta:
    """What UploadPart stores with one part attempt."""

    size: int
    stored_size: int
    etag: str
    mod_time_ns: int
    checksums: Mapping[str, str] = field(default_factory=dict)
    encryption: Mapping[str, Any] | None = None

    def to_bytes(self) -> bytes:
        doc: dict[str, Any] = {"v": FORMAT_VERSION, "s": self.size, "ss": self.stored_size,
                               "e": self.etag, "mt": self.mod_time_ns, "ck": dict(self.checksums)}
        if self.encryption:
            doc["enc"] = dict(self.encryption)
        return _dumps(doc)

    @classmethod
    def from_bytes(cls, blob: bytes) -> PartMeta:
        doc = _loads(blob, "part")
        try:
            return cls(int(doc["s"]), int(doc["ss"]), str(doc["e"]), int(doc["mt"]),
                       dict(doc.get("ck", {})), doc.get("enc"))
        except (KeyError, TypeError, ValueError) as exc:
            raise MetadataError(f"part metadata is incomplete: {exc!r}") from exc

    def part_info(self, number: int) -> PartInfo:
        return PartInfo(part_number=number, etag=self.etag, size=self.size,
                        last_modified_ns=self.mod_time_ns, checksums=dict(self.checksums))
