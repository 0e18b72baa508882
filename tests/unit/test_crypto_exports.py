"""gateway.crypto's public names do not drift, and it imports nothing above its layer."""

from __future__ import annotations

import ast
from pathlib import Path

import gateway.crypto

CRYPTO = Path(gateway.crypto.__file__).parent
# The object-layer contract (api.py, errors.py) is shared by every layer under s3.
ALLOWED_GATEWAY_IMPORTS = {"gateway.objects.api", "gateway.objects.errors"}


def test_exported_names():
    assert sorted(gateway.crypto.__all__) == sorted([
        "BLOCK_SIZE", "ENCRYPTED_PACKAGE_SIZE", "KMS", "PACKAGES_PER_BLOCK",
        "PACKAGE_OVERHEAD", "PACKAGE_SIZE", "BucketEncryption", "CacheStatistics",
        "CachingKMS", "DataKey", "DataKeyCacheConfig", "EncryptionMetadata", "MemoryKMS",
        "ObjectEncryption", "PackageDecryptor", "PackageEncryptor", "PartSegment", "RangePlan",
        "SSEOperation", "SSERequest", "SealedObject", "auto_encryption_from_env",
        "canonical_context", "check_unencrypted_read", "decrypted_size", "encrypted_size",
        "is_encrypted", "kms_context", "object_encryptor", "parse_bucket_encryption",
        "parse_sse_request", "part_encryptor", "plan_range", "put_etag",
        "render_bucket_encryption", "resolve_write_sse", "rotate_object_key", "seal_etag",
        "seal_object_key", "segment_decryptor", "sse_response_headers", "unseal_etag",
        "unseal_object_key",
    ])
    for name in gateway.crypto.__all__:
        assert getattr(gateway.crypto, name) is not None


def test_crypto_imports_only_downward():
    for path in CRYPTO.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                if name.startswith("gateway.") and not name.startswith("gateway.crypto"):
                    assert name in ALLOWED_GATEWAY_IMPORTS, f"{path.name} imports {name}"
                assert not name.startswith(("node", "kes", "cluster")), (path.name, name)
