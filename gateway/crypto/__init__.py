"""Server-side encryption core: package format, keys, metadata, SSE headers, KMS seam.

The object layer uses `ObjectEncryption` (envelope.py) with a `CachingKMS` around the KES
pool; S3 handlers use `parse_sse_request` / `sse_response_headers` (sse.py) and the bucket
encryption helpers (policy.py). docs/design/encryption.md explains the design.
"""

from gateway.crypto.cache import CacheStatistics, CachingKMS, DataKeyCacheConfig
from gateway.crypto.envelope import (
    ObjectEncryption,
    SealedObject,
    check_unencrypted_read,
    object_encryptor,
    part_encryptor,
    put_etag,
    segment_decryptor,
)
from gateway.crypto.keys import seal_etag, seal_object_key, unseal_etag, unseal_object_key
from gateway.crypto.kms import KMS, DataKey, MemoryKMS, canonical_context, kms_context
from gateway.crypto.metadata import EncryptionMetadata, is_encrypted
from gateway.crypto.packages import (
    BLOCK_SIZE,
    ENCRYPTED_PACKAGE_SIZE,
    PACKAGE_OVERHEAD,
    PACKAGE_SIZE,
    PACKAGES_PER_BLOCK,
    decrypted_size,
    encrypted_size,
)
from gateway.crypto.policy import (
    BucketEncryption,
    auto_encryption_from_env,
    parse_bucket_encryption,
    render_bucket_encryption,
    resolve_write_sse,
)
from gateway.crypto.ranges import PartSegment, RangePlan, plan_range
from gateway.crypto.rotation import rotate_object_key
from gateway.crypto.sse import SSEOperation, SSERequest, parse_sse_request, sse_response_headers
from gateway.crypto.stream import PackageDecryptor, PackageEncryptor

__all__ = [
    "BLOCK_SIZE",
    "ENCRYPTED_PACKAGE_SIZE",
    "KMS",
    "PACKAGES_PER_BLOCK",
    "PACKAGE_OVERHEAD",
    "PACKAGE_SIZE",
    "BucketEncryption",
    "CacheStatistics",
    "CachingKMS",
    "DataKey",
    "DataKeyCacheConfig",
    "EncryptionMetadata",
    "MemoryKMS",
    "ObjectEncryption",
    "PackageDecryptor",
    "PackageEncryptor",
    "PartSegment",
    "RangePlan",
    "SSEOperation",
    "SSERequest",
    "SealedObject",
    "auto_encryption_from_env",
    "canonical_context",
    "check_unencrypted_read",
    "decrypted_size",
    "encrypted_size",
    "is_encrypted",
    "kms_context",
    "object_encryptor",
    "parse_bucket_encryption",
    "parse_sse_request",
    "part_encryptor",
    "plan_range",
    "put_etag",
    "render_bucket_encryption",
    "resolve_write_sse",
    "rotate_object_key",
    "seal_etag",
    "seal_object_key",
    "segment_decryptor",
    "sse_response_headers",
    "unseal_etag",
    "unseal_object_key",
]
