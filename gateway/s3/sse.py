"""Server-side encryption on the wire: the seam between S3 handlers and the encryption core.

Handlers call `sse_for_write`, `customer_key` and `encryption_headers` and nothing else; the
object layer does the encrypting. Parsing the SSE request headers (SSE-S3, SSE-KMS, SSE-C,
bucket defaults) belongs to the crypto branch, which replaces `_parse_sse_headers` here. Until
then a request that asks for encryption is refused with 501 rather than stored in plaintext.
"""

from __future__ import annotations

from collections.abc import Mapping

from gateway.objects.api import EncryptionInfo, SSECustomerKey, SSEParams

from .errors import S3Error

__all__ = ["customer_key", "encryption_headers", "sse_for_write"]

SSE_HEADER = "x-amz-server-side-encryption"
SSE_C_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
SSE_C_KEY_MD5 = "x-amz-server-side-encryption-customer-key-md5"
COPY_SOURCE_SSE_C = "x-amz-copy-source-server-side-encryption-customer-"

_NOT_AVAILABLE = "Server-side encryption is not available on this gateway."


def _asks_for_encryption(h: Mapping[str, str], prefix: str) -> bool:
    return any(name.startswith(prefix) for name in h)


def _parse_sse_headers(h: Mapping[str, str]) -> SSEParams | None:
    if _asks_for_encryption(h, SSE_HEADER):
        raise S3Error("NotImplemented", _NOT_AVAILABLE)
    return None


def sse_for_write(h: Mapping[str, str], bucket_default: bytes | None = None) -> SSEParams | None:
    """The encryption a PutObject / CreateMultipartUpload / CopyObject destination asks for."""
    return _parse_sse_headers(h)


def customer_key(h: Mapping[str, str], *, copy_source: bool = False) -> SSECustomerKey | None:
    """The SSE-C key a read (or a copy source) carries, if any."""
    prefix = COPY_SOURCE_SSE_C if copy_source else "x-amz-server-side-encryption-customer-"
    if _asks_for_encryption(h, prefix):
        raise S3Error("NotImplemented", _NOT_AVAILABLE)
    return None


def encryption_headers(info: EncryptionInfo | None,
                       key: SSECustomerKey | None = None) -> dict[str, str]:
    """Response headers reporting how an object is encrypted."""
    if info is None:
        return {}
    if info.mode == "SSE-C":
        headers = {SSE_C_ALGORITHM: "AES256"}
        if key is not None:
            headers[SSE_C_KEY_MD5] = key.key_md5
        return headers
    if info.mode == "SSE-S3":
        return {SSE_HEADER: "AES256"}
    headers = {SSE_HEADER: "aws:kms"}
    if info.kms_key_id:
        headers["x-amz-server-side-encryption-aws-kms-key-id"] = info.kms_key_id
    if info.kms_context_b64:
        headers["x-amz-server-side-encryption-context"] = info.kms_context_b64
    return headers
