"""The object layer's entry point: seal a new object's key, open a stored one, and build the
encryptors and decryptors for its data.

    enc = ObjectEncryption(CachingKMS(kes_pool))          # one per gateway
    sealed = await enc.seal_new(sse, bucket, key)          # before reading the body
    encryptor = object_encryptor(sealed.object_key)        # or part_encryptor(...)
    ... store sealed.metadata.to_dict() with the object ...
    object_key = await enc.open(metadata, bucket, key, customer_key=sse_c)
    for seg in plan_range(part_sizes, offset, length).segments:
        decryptor = segment_decryptor(object_key, metadata, seg)
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from gateway.crypto.keys import (
    SealDomain,
    new_object_key,
    new_part_nonce,
    part_key,
    random_etag,
    seal_object_key,
    unseal_object_key,
)
from gateway.crypto.kms import KMS, ContextScope, kms_context
from gateway.crypto.metadata import EncryptionMetadata
from gateway.crypto.ranges import PartSegment
from gateway.crypto.stream import PackageDecryptor, PackageEncryptor
from gateway.objects.api import SSECustomerKey, SSEMode, SSEParams
from gateway.objects.errors import (
    KMSNotConfigured,
    SSECKeyRequired,
    SSENotApplicable,
)

__all__ = [
    "ObjectEncryption",
    "SealedObject",
    "check_unencrypted_read",
    "object_encryptor",
    "part_encryptor",
    "put_etag",
    "segment_decryptor",
]


@dataclass(frozen=True)
class SealedObject:
    """A new object's key (use it, never store it) and the metadata to store."""

    object_key: bytes = field(repr=False)
    metadata: EncryptionMetadata


class ObjectEncryption:
    """Seals and opens object keys. `kms` None = no KMS configured (SSE-C still works).

    scope: how new objects' KES contexts are built ("object", the default, is MinIO's
    per-object context; "bucket" lets the CachingKMS reuse a data key across objects).
    Stored per object, so changing it never breaks reads.
    """

    def __init__(self, kms: KMS | None, *, scope: ContextScope = "object") -> None:
        self.kms = kms
        self.scope = scope

    @property
    def kms_configured(self) -> bool:
        return self.kms is not None

    async def seal_new(
        self, sse: SSEParams, bucket: str, key: str, *, multipart: bool = False
    ) -> SealedObject:
        """A fresh object key for `bucket/key`, sealed as `sse` asks (one KES generate for
        SSE-S3/KMS unless cached). Call before reading the body: KMS errors come first."""
        object_key = new_object_key()
        metadata = await self.seal(object_key, sse, bucket, key)
        return SealedObject(object_key, replace(metadata, multipart=multipart))

    async def seal(
        self, object_key: bytes, sse: SSEParams, bucket: str, key: str
    ) -> EncryptionMetadata:
        """Seals an existing object key (new objects, rotation, copy to another name)."""
        if sse.mode == "SSE-C":
            if sse.customer_key is None:
                raise ValueError("SSE-C parameters without a customer key")
            sealed = seal_object_key(
                object_key, sse.customer_key.key, domain="SSE-C", bucket=bucket, key=key
            )
            return EncryptionMetadata(mode="SSE-C", sealed_key=sealed)
        kms = self._require_kms()
        # SSE-S3 requests never name a key; rotation may move an SSE-S3 object to another one
        key_id = sse.kms_key_id or kms.default_key_id
        client_context = None
        if sse.mode == "SSE-KMS" and sse.kms_context is not None:
            client_context = dict(sse.kms_context)
        context = kms_context(bucket, key, client_context=client_context, scope=self.scope)
        # any (plaintext, ciphertext) pair will do, e.g. the KES client's tuple
        plaintext, ciphertext = await kms.generate_key(key_id, context)
        sealed = seal_object_key(
            object_key, plaintext, domain=_domain(sse.mode), bucket=bucket, key=key
        )
        return EncryptionMetadata(
            mode=sse.mode,
            sealed_key=sealed,
            kms_key_id=key_id,
            kms_ciphertext=ciphertext,
            kms_context=client_context,
            context_scope=self.scope,
        )

    async def open(
        self,
        metadata: EncryptionMetadata,
        bucket: str,
        key: str,
        *,
        customer_key: SSECustomerKey | None = None,
    ) -> bytes:
        """The object key of a stored object (one KES decrypt for SSE-S3/KMS unless cached).

        Raises SSECKeyRequired / SSECKeyMismatch (SSE-C), SSENotApplicable (an SSE-C key
        for an SSE-S3/KMS object), KMSNotConfigured, KMS errors, ObjectTampered.
        """
        if metadata.mode == "SSE-C":
            if customer_key is None:
                raise SSECKeyRequired(
                    "The object was stored using a form of Server Side Encryption. The "
                    "correct parameters must be provided to retrieve the object."
                )
            return unseal_object_key(
                metadata.sealed_key, customer_key.key, domain="SSE-C", bucket=bucket, key=key
            )
        if customer_key is not None:
            raise SSENotApplicable("The encryption parameters are not applicable to this object.")
        kms = self._require_kms()
        context = kms_context(
            bucket, key, client_context=metadata.kms_context, scope=metadata.context_scope
        )
        external_key = await kms.decrypt(
            metadata.kms_key_id or "", metadata.kms_ciphertext or b"", context
        )
        return unseal_object_key(
            metadata.sealed_key, external_key, domain=_domain(metadata.mode),
            bucket=bucket, key=key,
        )

    def _require_kms(self) -> KMS:
        if self.kms is None:
            raise KMSNotConfigured("Server side encryption specified but KMS is not configured")
        return self.kms


def _domain(mode: SSEMode) -> SealDomain:
    return mode


def check_unencrypted_read(customer_key: SSECustomerKey | None) -> None:
    """For reads of an unencrypted object: an SSE-C key is an error (400 InvalidRequest)."""
    if customer_key is not None:
        raise SSENotApplicable("The encryption parameters are not applicable to this object.")


def object_encryptor(object_key: bytes) -> PackageEncryptor:
    """The encryptor of a single-part object's data."""
    return PackageEncryptor(object_key)


def part_encryptor(object_key: bytes, part_number: int) -> tuple[PackageEncryptor, bytes]:
    """The encryptor of one upload of a part, and the nonce to store with that part."""
    nonce = new_part_nonce()
    return PackageEncryptor(part_key(object_key, part_number, nonce)), nonce


def segment_decryptor(
    object_key: bytes, metadata: EncryptionMetadata, segment: PartSegment
) -> PackageDecryptor:
    """The decryptor for one segment of a range plan (ranges.plan_range)."""
    data_key = object_key
    if metadata.multipart:
        number, nonce = metadata.part_nonce(segment.part_index)
        data_key = part_key(object_key, number, nonce)
    return PackageDecryptor(
        data_key,
        first_sequence=segment.first_package,
        skip=segment.skip,
        keep=segment.keep,
        expect_final=segment.to_end,
    )


def put_etag(mode: SSEMode, plaintext_md5_hex: str | None) -> str:
    """The ETag of a single-part encrypted PUT (or one part): SSE-S3 reports the plaintext
    MD5 (clients compare it to their file); SSE-KMS and SSE-C report 32 random hex digits
    (as AWS does), so their PUTs skip the MD5 pass unless Content-MD5 must be checked."""
    if mode == "SSE-S3":
        if plaintext_md5_hex is None:
            raise ValueError("an SSE-S3 ETag is the plaintext MD5: compute it")
        return plaintext_md5_hex
    return random_etag()
