"""Key rotation: re-seal an object's key under another KES key (or customer key) without
touching its data. The object key is unchanged, so part keys and the sealed ETag stay valid.
"""

from __future__ import annotations

from dataclasses import replace

from gateway.crypto.envelope import ObjectEncryption
from gateway.crypto.metadata import EncryptionMetadata
from gateway.objects.api import SSECustomerKey, SSEParams

__all__ = ["rotate_object_key"]


async def rotate_object_key(
    encryption: ObjectEncryption,
    metadata: EncryptionMetadata,
    bucket: str,
    key: str,
    target: SSEParams,
    *,
    customer_key: SSECustomerKey | None = None,
) -> EncryptionMetadata:
    """The object's metadata re-sealed as `target` asks.

    SSE-S3/SSE-KMS: unseal with the old data key (KES decrypt), generate a new data key
    under `target`'s key id (SSE-S3: the default key) and seal again. SSE-C: `customer_key`
    is the current key, `target.customer_key` the new one. Nothing is written; the caller
    stores the result in place of the old metadata (under the object's write lock).
    """
    object_key = await encryption.open(metadata, bucket, key, customer_key=customer_key)
    resealed = await encryption.seal(object_key, target, bucket, key)
    return replace(
        metadata,
        mode=resealed.mode,
        sealed_key=resealed.sealed_key,
        kms_key_id=resealed.kms_key_id,
        kms_ciphertext=resealed.kms_ciphertext,
        kms_context=resealed.kms_context,
        context_scope=resealed.context_scope,
    )
