"""Encryption inside the erasure-coded object layer: the sealer that encrypts a write block by
block, the records stored with objects, uploads and parts, the reader that decrypts (and, when
a node forged a shard, repairs) any range, and the ETags of encrypted objects.

Keys, formats and KMS calls are gateway/crypto's (docs/design/encryption.md). What is stored:
- object: `ObjectMeta.encryption` = `EncryptionMetadata.to_dict()`; an SSE-S3 object's ETag
  (the plaintext MD5) only sealed inside it, `ObjectMeta.etag` left empty;
- upload: the sealed object key (the key itself is unsealed again for every part);
- part: `{"nonce": <its random part nonce>}`, plus `"etag"` sealed for SSE-S3 parts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from gateway.crypto.envelope import ObjectEncryption, SealedObject, part_encryptor
from gateway.crypto.keys import part_key, seal_etag, unseal_etag
from gateway.crypto.metadata import EncryptionMetadata
from gateway.crypto.packages import ENCRYPTED_PACKAGE_SIZE, PACKAGE_SIZE
from gateway.crypto.ranges import PartSegment, plan_range
from gateway.crypto.stream import PackageDecryptor, PackageEncryptor
from gateway.objects import errors as oe
from gateway.objects.api import ObjectInfo, SSECustomerKey, SSEMode, SSEParams
from gateway.objects.get import ErasureObjectReader
from gateway.objects.metadata import PartMeta

__all__ = [
    "DecryptingReader",
    "EncryptingSealer",
    "ObjectSealing",
    "OpenedUpload",
    "PartSealing",
    "client_etag",
    "encrypted_reader",
    "open_upload",
    "plain_block_size",
    "rekey",
    "unseal_listing",
]

_NONCE, _ETAG = "nonce", "etag"
LISTING_CONCURRENCY = 16  # KMS decrypts in flight while a listing unseals SSE-S3 ETags


def plain_block_size(block_size: int) -> int:
    """Plaintext bytes that fill one erasure block of `block_size` stored bytes."""
    if block_size % ENCRYPTED_PACKAGE_SIZE:
        raise oe.EncryptionError(f"erasure block of {block_size} bytes does not hold whole "
                                 f"{ENCRYPTED_PACKAGE_SIZE}-byte packages")
    return block_size // ENCRYPTED_PACKAGE_SIZE * PACKAGE_SIZE


class EncryptingSealer:
    """shard_writer.BlockSealer: each plaintext block becomes its packages (the encryptor
    holds the last package back until it knows whether it is the final one)."""

    def __init__(self, encryptor: PackageEncryptor, block_size: int):
        self.encryptor = encryptor
        self.plain_block_size = plain_block_size(block_size)

    def seal(self, block: bytes, index: int, final: bool) -> bytes:
        out = self.encryptor.update(block)
        if not final:  # held-back bytes: the writer joins this with what follows
            return out  # type: ignore[return-value]
        out += self.encryptor.finish()
        return bytes(out)  # may be stored as is (protobuf wants bytes)


@dataclass(frozen=True)
class ObjectSealing:
    """put.WriteSealing for a single PUT: the record to store once the ETag is known."""

    sealed: SealedObject

    def record(self, etag: str) -> tuple[str, dict[str, str]]:
        meta = self.sealed.metadata
        if meta.mode == "SSE-S3":
            sealed = seal_etag(self.sealed.object_key, etag)
            return "", replace(meta, sealed_etag=sealed).to_dict()
        return etag, meta.to_dict()


@dataclass(frozen=True)
class PartSealing:
    """put.WriteSealing for one part upload: its nonce, and its ETag sealed for SSE-S3."""

    object_key: bytes
    nonce: bytes
    mode: SSEMode

    def record(self, etag: str) -> tuple[str, dict[str, str]]:
        record = {_NONCE: _b64(self.nonce)}
        if self.mode == "SSE-S3":
            record[_ETAG] = _b64(seal_etag(self.object_key, etag))
            return "", record
        return etag, record


@dataclass(frozen=True)
class OpenedUpload:
    """An encrypted multipart upload; `object_key` is None when it was not needed."""

    meta: EncryptionMetadata
    object_key: bytes | None

    def part_sealer(self, block_size: int, part_number: int) -> tuple[EncryptingSealer,
                                                                      PartSealing]:
        assert self.object_key is not None
        encryptor, nonce = part_encryptor(self.object_key, part_number)
        return (EncryptingSealer(encryptor, block_size),
                PartSealing(self.object_key, nonce, self.meta.mode))

    def part_etag(self, part: PartMeta) -> str:
        """The ETag of a stored part as the client saw it."""
        record = part.encryption or {}
        if _ETAG not in record:
            return part.etag
        if self.object_key is None:
            raise oe.ObjectTampered("a sealed part ETag in an upload whose ETags are not sealed")
        return unseal_etag(self.object_key, _unb64(record[_ETAG]))

    def object_record(self, etag: str,
                      parts: Sequence[tuple[int, Mapping[str, Any] | None]]) -> tuple[str,
                                                                                      dict]:
        """(stored ETag, encryption record) of the completed object: the parts' nonces in
        order, and for SSE-S3 the multipart ETag sealed."""
        nonces = []
        for number, record in parts:
            try:
                nonce = _unb64((record or {})[_NONCE])
            except KeyError:
                raise oe.ObjectTampered(f"part {number} has no encryption nonce") from None
            nonces.append((number, nonce))
        meta = replace(self.meta, multipart=True, part_nonces=tuple(nonces))
        if meta.mode == "SSE-S3":
            if self.object_key is None:
                raise oe.ObjectTampered("an SSE-S3 upload completed without its key")
            return "", replace(meta, sealed_etag=seal_etag(self.object_key, etag)).to_dict()
        return etag, meta.to_dict()


async def open_upload(enc: ObjectEncryption, record: Mapping[str, Any], bucket: str, key: str,
                      customer_key: SSECustomerKey | None, *, need_key: bool) -> OpenedUpload:
    """The upload's encryption; its object key when `need_key`, when its ETags are sealed
    (SSE-S3), or to check a customer key the client sent."""
    meta = EncryptionMetadata.from_dict(record)
    if meta.mode != "SSE-C" and customer_key is not None:
        raise oe.SSENotApplicable("The encryption parameters are not applicable to this "
                                  "upload.")
    if need_key or meta.mode == "SSE-S3" or customer_key is not None:
        return OpenedUpload(meta, await enc.open(meta, bucket, key, customer_key=customer_key))
    return OpenedUpload(meta, None)


async def rekey(enc: ObjectEncryption, record: Mapping[str, Any], bucket: str, key: str,
                target: SSEParams, customer_key: SSECustomerKey | None
                ) -> tuple[EncryptionMetadata, bytes]:
    """An object's record re-sealed as `target` asks, and its (unchanged) object key. The
    data, part keys and sealed ETag stay valid: only the seal and its KMS material change."""
    meta = EncryptionMetadata.from_dict(record)
    object_key = await enc.open(meta, bucket, key, customer_key=customer_key)
    resealed = await enc.seal(object_key, target, bucket, key)
    return replace(meta, mode=resealed.mode, sealed_key=resealed.sealed_key,
                   kms_key_id=resealed.kms_key_id, kms_ciphertext=resealed.kms_ciphertext,
                   kms_context=resealed.kms_context,
                   context_scope=resealed.context_scope), object_key


def client_etag(meta: EncryptionMetadata, stored_etag: str, object_key: bytes) -> str:
    """The ETag S3 reports: unsealed when the record holds it sealed."""
    if meta.sealed_etag is None:
        return stored_etag
    return unseal_etag(object_key, meta.sealed_etag)


async def encrypted_reader(enc: ObjectEncryption, reader: ErasureObjectReader,
                           customer_key: SSECustomerKey | None) -> DecryptingReader:
    """Opens the key of an encrypted version (KMS decrypt or the customer key) and wraps its
    reader; raises the SSE-C / KMS errors of `ObjectEncryption.open`."""
    chosen, info = reader.chosen, reader.info
    meta = EncryptionMetadata.from_dict(chosen.meta.encryption or {})
    object_key = await enc.open(meta, info.bucket, info.key, customer_key=customer_key)
    info = replace(info, etag=client_etag(meta, info.etag, object_key))
    sizes = tuple(p.size for p in chosen.meta.parts) if meta.multipart else (info.size,)
    return DecryptingReader(reader, info, object_key, meta, sizes)


class DecryptingReader:
    """ObjectReader of an encrypted version: plaintext of any range, fetched and decrypted
    package-aligned (only the erasure blocks the range touches are read)."""

    def __init__(self, inner: ErasureObjectReader, info: ObjectInfo, object_key: bytes,
                 meta: EncryptionMetadata, part_sizes: Sequence[int]):
        self.inner = inner
        self.info = info
        self.meta = meta
        self._key = object_key
        self._sizes = tuple(part_sizes)

    async def close(self) -> None:
        await self.inner.close()

    async def stream(self, start: int = 0, length: int | None = None) -> AsyncIterator[bytes]:
        """Plaintext [start, start + length), clamped to the object's size."""
        end = self.info.size if length is None else min(self.info.size, start + max(length, 0))
        if start >= end:
            return
        for segment in plan_range(self._sizes, start, end - start).segments:
            async for chunk in self._segment(segment):
                yield chunk

    def _data_key(self, segment: PartSegment) -> bytes:
        if not self.meta.multipart:
            return self._key
        number, nonce = self.meta.part_nonce(segment.part_index)
        return part_key(self._key, number, nonce)

    async def _segment(self, seg: PartSegment) -> AsyncIterator[bytes]:
        lo, hi = seg.cipher_offset, seg.cipher_offset + seg.cipher_length
        block_size = self.inner.geometry.block_size
        decryptor = PackageDecryptor(self._data_key(seg), first_sequence=seg.first_package,
                                     skip=seg.skip, keep=seg.keep, expect_final=seg.to_end)
        delivered = 0
        async for index, data in self.inner.stored_part_blocks(seg.part_index, lo, hi):
            last = (index + 1) * block_size >= hi
            try:
                out = await self.inner.ctx.run(_open, decryptor, data, last)
            except oe.ObjectTampered:
                decryptor, out = await self._rebuild(seg, index, delivered)
            delivered += len(out)
            if out:
                # a fresh bytearray no one else holds: sent as is, saving a 1 MiB copy a block
                yield out  # type: ignore[misc]

    async def _rebuild(self, seg: PartSegment, index: int,
                       delivered: int) -> tuple[PackageDecryptor, bytearray]:
        """Block `index` failed authentication: decode it again from other shards and go on
        with a decryptor restarted at that block."""
        block_size = self.inner.geometry.block_size
        lo, hi = seg.cipher_offset, seg.cipher_offset + seg.cipher_length
        base = index * block_size
        a, b = max(lo - base, 0), min(hi - base, block_size)
        first_in_segment = index == lo // block_size
        data_key = self._data_key(seg)

        def accept(block: bytes) -> tuple[PackageDecryptor, bytearray] | None:
            decryptor = PackageDecryptor(
                data_key, first_sequence=(base + a) // ENCRYPTED_PACKAGE_SIZE,
                skip=seg.skip if first_in_segment else 0, keep=seg.keep - delivered,
                expect_final=seg.to_end)
            try:
                return decryptor, _open(decryptor, block[a:b], base + block_size >= hi)
            except oe.ObjectTampered:
                return None

        if block_size % ENCRYPTED_PACKAGE_SIZE or self.inner.chosen.meta.is_inline:
            raise oe.ObjectTampered(f"{self.info.bucket}/{self.info.key}: encrypted data is "
                                    "not authentic")
        return await self.inner.rebuild_block(seg.part_index, index, accept)


def _open(decryptor: PackageDecryptor, data: bytes, last: bool) -> bytearray:
    out = decryptor.update(data)
    if last:
        decryptor.finish()
    return out


async def unseal_listing(enc: ObjectEncryption, bucket: str,
                         entries: Sequence[tuple[ObjectInfo, Mapping[str, Any] | None]],
                         ) -> list[ObjectInfo]:
    """Listed objects (each with its encryption record) with the ETags S3 reports: SSE-S3
    ETags are stored sealed, so each such object's key is opened (a KMS decrypt, unless
    cached), a bounded number at a time; the others cost nothing."""
    slots = asyncio.Semaphore(LISTING_CONCURRENCY)

    async def one(info: ObjectInfo, record: Mapping[str, Any]) -> ObjectInfo:
        encryption = EncryptionMetadata.from_dict(record)
        async with slots:
            object_key = await enc.open(encryption, bucket, info.key)
        return replace(info, etag=client_etag(encryption, info.etag, object_key))

    out = [info for info, _ in entries]
    sealed = [i for i, (_, record) in enumerate(entries) if record and "sse-etag" in record]
    if sealed:
        opened = await asyncio.gather(*(one(*entries[i]) for i in sealed))  # type: ignore[arg-type]
        for i, info in zip(sealed, opened, strict=True):
            out[i] = info
    return out


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError, TypeError) as exc:
        raise oe.ObjectTampered("malformed part encryption record") from exc
