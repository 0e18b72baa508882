"""SSE request headers in, `SSEParams` / `SSECustomerKey` out (or the exact S3 error); and
the SSE response headers for an object.

Follows MinIO's rules (docs/design/encryption.md has the table) with these deliberate
changes: an unknown x-amz-server-side-encryption value is 400 InvalidArgument (MinIO treats
it as SSE-S3); a customer key that is not base64 of 32 bytes is 400 InvalidArgument (MinIO:
403); KMS key-id or context headers without `aws:kms` are 400 InvalidArgument (as AWS);
`aws:kms:dsse` is 501 NotImplemented; a KMS key name KES could never hold is 400
KMS.NotFoundException.
"""

from __future__ import annotations

import base64
import binascii
import enum
import hashlib
import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.crypto.kms import valid_key_name
from gateway.objects.api import EncryptionInfo, SSECustomerKey, SSEParams
from gateway.objects.errors import (
    KMSKeyNotFound,
    SSEBadRequest,
    SSECInsecureConnection,
    SSEInvalidArgument,
    SSEInvalidRequest,
    SSENotImplemented,
)

__all__ = ["SSEOperation", "SSERequest", "parse_sse_request", "sse_response_headers"]

SSE = "x-amz-server-side-encryption"
KMS_KEY_ID = "x-amz-server-side-encryption-aws-kms-key-id"
KMS_CONTEXT = "x-amz-server-side-encryption-context"
SSEC_ALGORITHM = "x-amz-server-side-encryption-customer-algorithm"
SSEC_KEY = "x-amz-server-side-encryption-customer-key"
SSEC_KEY_MD5 = "x-amz-server-side-encryption-customer-key-md5"
COPY_SSEC_ALGORITHM = "x-amz-copy-source-server-side-encryption-customer-algorithm"
COPY_SSEC_KEY = "x-amz-copy-source-server-side-encryption-customer-key"
COPY_SSEC_KEY_MD5 = "x-amz-copy-source-server-side-encryption-customer-key-md5"
ARN_PREFIX = "arn:aws:kms:"

_SSEC = (SSEC_ALGORITHM, SSEC_KEY, SSEC_KEY_MD5)
_COPY_SSEC = (COPY_SSEC_ALGORITHM, COPY_SSEC_KEY, COPY_SSEC_KEY_MD5)
_KMS_ONLY = (KMS_KEY_ID, KMS_CONTEXT)


class SSEOperation(enum.Enum):
    """The S3 operation whose headers are parsed (each accepts different SSE headers)."""

    PUT_OBJECT = "PutObject"
    GET_OBJECT = "GetObject"
    HEAD_OBJECT = "HeadObject"
    COPY_OBJECT = "CopyObject"
    CREATE_MULTIPART_UPLOAD = "CreateMultipartUpload"
    UPLOAD_PART = "UploadPart"
    UPLOAD_PART_COPY = "UploadPartCopy"
    COMPLETE_MULTIPART_UPLOAD = "CompleteMultipartUpload"


_WRITES = {SSEOperation.PUT_OBJECT, SSEOperation.COPY_OBJECT,
           SSEOperation.CREATE_MULTIPART_UPLOAD}
_READS = {SSEOperation.GET_OBJECT, SSEOperation.HEAD_OBJECT}
_COPIES = {SSEOperation.COPY_OBJECT, SSEOperation.UPLOAD_PART_COPY}


@dataclass(frozen=True)
class SSERequest:
    """The SSE parts of one request.

    sse: the encryption a write asks for (PutObject, CopyObject destination,
        CreateMultipartUpload); None = no SSE headers (bucket default / auto-encryption may
        still apply: policy.resolve_write_sse).
    customer_key: the SSE-C key of the object read or written (GET/HEAD, UploadPart,
        UploadPartCopy destination, Complete; for writes it is also inside `sse`).
    copy_source_key: the SSE-C key of a copy source (CopyObject, UploadPartCopy).
    """

    sse: SSEParams | None = None
    customer_key: SSECustomerKey | None = None
    copy_source_key: SSECustomerKey | None = None


def parse_sse_request(
    headers: Mapping[str, str], operation: SSEOperation, *, secure: bool
) -> SSERequest:
    """Parses and validates the SSE headers of a request (any header-name case).

    secure: the client connection is TLS. Raises the EncryptionError subclass whose S3
    mapping is the answer MinIO/AWS give (see the module docstring for our changes).
    """
    h = {name.lower(): value for name, value in headers.items()}
    has_ssec = any(name in h for name in _SSEC)
    has_copy_ssec = any(name in h for name in _COPY_SSEC)
    if (has_ssec or has_copy_ssec) and not secure:
        raise SSECInsecureConnection(
            "Requests specifying Server Side Encryption with Customer provided keys "
            "must be made over a secure connection."
        )
    if has_copy_ssec and operation not in _COPIES:
        raise SSEInvalidRequest("The encryption parameters are not applicable to this object.")
    copy_key = _customer_key(h, _COPY_SSEC) if has_copy_ssec else None
    customer_key = _customer_key(h, _SSEC) if has_ssec else None
    if operation in _READS:
        if SSE in h or any(name in h for name in _KMS_ONLY):
            raise SSEBadRequest(
                "x-amz-server-side-encryption headers are not supported for this operation."
            )
        return SSERequest(customer_key=customer_key)
    if operation == SSEOperation.UPLOAD_PART_COPY and (
        h.get(SSE) == "aws:kms" or any(name in h for name in _KMS_ONLY)
    ):
        raise SSENotImplemented("SSE-KMS is not supported for UploadPartCopy.")
    if operation not in _WRITES:
        # UploadPart / UploadPartCopy / Complete: the upload's encryption was fixed at
        # CreateMultipartUpload; only an SSE-C key matters here (MinIO ignores the rest).
        return SSERequest(customer_key=customer_key, copy_source_key=copy_key)
    sse = _write_sse(h, customer_key)
    return SSERequest(sse=sse, customer_key=customer_key, copy_source_key=copy_key)


def _write_sse(h: dict[str, str], customer_key: SSECustomerKey | None) -> SSEParams | None:
    value = h.get(SSE)
    kms_headers = any(name in h for name in _KMS_ONLY)
    if customer_key is not None:
        if value is not None or kms_headers:
            raise SSEInvalidArgument(
                "Server side encryption specified with SSE-C headers is incompatible with "
                "the encryption method specified by x-amz-server-side-encryption."
            )
        return SSEParams(mode="SSE-C", customer_key=customer_key)
    if value is None:
        if kms_headers:
            raise SSEInvalidArgument(
                "Server Side Encryption with AWS KMS managed key requires HTTP header "
                "x-amz-server-side-encryption : aws:kms"
            )
        return None
    if value == "AES256":
        if kms_headers:
            raise SSEInvalidArgument(
                "x-amz-server-side-encryption-aws-kms-key-id and -context are only valid "
                "with x-amz-server-side-encryption: aws:kms"
            )
        return SSEParams(mode="SSE-S3")
    if value == "aws:kms":
        return SSEParams(
            mode="SSE-KMS", kms_key_id=_kms_key_id(h.get(KMS_KEY_ID)),
            kms_context=_kms_context(h.get(KMS_CONTEXT)),
        )
    if value == "aws:kms:dsse":
        raise SSENotImplemented("DSSE-KMS (aws:kms:dsse) is not supported.")
    raise SSEInvalidArgument(
        f"The x-amz-server-side-encryption value {value!r} is not valid: "
        "use AES256 or aws:kms."
    )


def _kms_key_id(raw: str | None) -> str | None:
    """The key name, without an arn:aws:kms: prefix; None = the KMS default key."""
    if raw is None or raw == "":
        return None
    if raw != raw.strip():
        raise SSEInvalidRequest("The KMS key id must not have leading or trailing spaces.")
    name = raw.removeprefix(ARN_PREFIX)
    if not valid_key_name(name):
        raise KMSKeyNotFound(f"Invalid keyId {raw!r}: no such KMS key.")
    return name


def _kms_context(raw: str | None) -> dict[str, str] | None:
    """The x-amz-server-side-encryption-context header: base64 of a JSON string map."""
    if raw is None:
        return None
    try:
        context = json.loads(base64.b64decode(raw, validate=True))
    except (binascii.Error, ValueError) as exc:
        raise SSEInvalidArgument(
            "x-amz-server-side-encryption-context must be base64-encoded JSON."
        ) from exc
    if not isinstance(context, dict) or not all(
        isinstance(k, str) and isinstance(v, str) and _is_unicode(k) and _is_unicode(v)
        for k, v in context.items()
    ):
        raise SSEInvalidArgument(
            "x-amz-server-side-encryption-context must be a JSON object of strings."
        )
    return context


def _is_unicode(text: str) -> bool:
    """No lone surrogates: they could not round-trip through the stored context."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _customer_key(h: dict[str, str], names: tuple[str, str, str]) -> SSECustomerKey:
    algorithm_name, key_name, md5_name = names
    algorithm = h.get(algorithm_name)
    if algorithm is None:
        raise SSEInvalidArgument(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide a valid encryption algorithm."
        )
    if algorithm != "AES256":
        raise SSEInvalidArgument("The encryption algorithm specified is not supported.")
    if h.get(key_name) is None:
        raise SSEInvalidArgument(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide an appropriate secret key."
        )
    if h.get(md5_name) is None:
        raise SSEInvalidArgument(
            "Requests specifying Server Side Encryption with Customer provided keys must "
            "provide the client calculated MD5 of the secret key."
        )
    key = _b64_exact(h[key_name], 32)
    if key is None:
        raise SSEInvalidArgument(
            "The secret key was invalid for the specified algorithm: it must be 256 bits."
        )
    md5 = _b64_exact(h[md5_name], 16)
    if md5 is None or not hmac.compare_digest(md5, hashlib.md5(key).digest()):
        raise SSEInvalidArgument(
            "The calculated MD5 hash of the key did not match the hash that was provided."
        )
    return SSECustomerKey(key=key, key_md5=h[md5_name])


def _b64_exact(text: str, size: int) -> bytes | None:
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == size else None


def sse_response_headers(
    info: EncryptionInfo | None, customer_key: SSECustomerKey | None = None
) -> dict[str, str]:
    """The SSE headers of a PUT/GET/HEAD/Copy/UploadPart/Complete response."""
    if info is None:
        return {}
    if info.mode == "SSE-S3":
        return {SSE: "AES256"}
    if info.mode == "SSE-KMS":
        headers = {SSE: "aws:kms"}
        if info.kms_key_id:
            headers[KMS_KEY_ID] = ARN_PREFIX + info.kms_key_id
        if info.kms_context_b64:
            headers[KMS_CONTEXT] = info.kms_context_b64
        return headers
    headers = {SSEC_ALGORITHM: "AES256"}
    if customer_key is not None:
        headers[SSEC_KEY_MD5] = customer_key.key_md5
    return headers
