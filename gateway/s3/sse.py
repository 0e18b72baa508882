"""Server-side encryption on the wire: the seam between S3 handlers and the encryption core.

Handlers ask `write_sse` (PutObject, CopyObject destination, CreateMultipartUpload: request
headers, else the bucket's default encryption, else MINIO_KMS_AUTO_ENCRYPTION), `read_keys`
(the SSE-C keys of a read, an upload part or a copy source) and `encryption_headers`; the
object layer does the encrypting. Header rules and error choices are gateway/crypto/sse.py's
(docs/design/encryption.md §8).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.crypto.kms import KMS
from gateway.crypto.policy import (
    BUCKET_ENCRYPTION_CONFIG,
    BucketEncryption,
    parse_bucket_encryption,
    resolve_write_sse,
)
from gateway.crypto.sse import SSEOperation, SSERequest, parse_sse_request, sse_response_headers
from gateway.objects.api import EncryptionInfo, ObjectLayer, SSECustomerKey, SSEParams
from gateway.objects.errors import ObjectLayerError

from .request import Context

__all__ = [
    "BucketDefaults",
    "SSEService",
    "encryption_headers",
    "read_keys",
    "write_sse",
]


class BucketDefaults:
    """Each bucket's default encryption, remembered for `ttl` seconds (bounded LRU), so a PUT
    does not ask every node for it. This gateway's own changes apply at once; another
    gateway's show after at most `ttl` seconds (TESSERA_GATEWAY_BUCKET_CONFIG_TTL)."""

    def __init__(self, layer: ObjectLayer, ttl: float, max_buckets: int = 10_000):
        self._layer = layer
        self._ttl = ttl
        self._max = max_buckets
        self._known: OrderedDict[str, tuple[float, BucketEncryption | None]] = OrderedDict()

    async def get(self, bucket: str) -> BucketEncryption | None:
        now = time.monotonic()
        hit = self._known.get(bucket)
        if hit is not None and now - hit[0] < self._ttl:
            self._known.move_to_end(bucket)
            return hit[1]
        raw = await self._layer.get_bucket_config(bucket, BUCKET_ENCRYPTION_CONFIG)
        try:
            value = parse_bucket_encryption(raw) if raw else None
        except ObjectLayerError:  # written by us, so valid; never let it block writes
            value = None
        if self._ttl > 0:
            self._known[bucket] = (now, value)
            self._known.move_to_end(bucket)
            while len(self._known) > self._max:
                self._known.popitem(last=False)
        return value

    def forget(self, bucket: str) -> None:
        self._known.pop(bucket, None)


@dataclass
class SSEService:
    """What the S3 front needs to decide a request's encryption.

    kms: the gateway's KMS (key checks for PutBucketEncryption), None when not configured.
    """

    kms: KMS | None
    auto_encryption: bool
    defaults: BucketDefaults

    @property
    def kms_configured(self) -> bool:
        return self.kms is not None


def _parse(ctx: Context, operation: SSEOperation,
           headers: Mapping[str, str] | None = None) -> SSERequest:
    return parse_sse_request(ctx.req.h if headers is None else headers, operation,
                             secure=ctx.req.scheme == "https")


async def write_sse(ctx: Context, bucket: str, operation: SSEOperation,
                    headers: Mapping[str, str] | None = None
                    ) -> tuple[SSEParams | None, SSERequest]:
    """The encryption a write gets, and the parsed SSE headers (for copy-source keys);
    `headers`: where the SSE settings are when not in the request's headers (PostObject's
    form fields)."""
    request = _parse(ctx, operation, headers)
    service: SSEService = ctx.sse
    default = None
    if request.sse is None:  # the bucket default applies only to requests without SSE
        default = await service.defaults.get(bucket)
    sse = resolve_write_sse(request.sse, bucket_default=default,
                            auto_encryption=service.auto_encryption,
                            kms_configured=service.kms_configured)
    return sse, request


def read_keys(ctx: Context, operation: SSEOperation) -> SSERequest:
    """The SSE-C keys of a request that reads (GET, HEAD), writes a part, or copies."""
    return _parse(ctx, operation)


def encryption_headers(info: EncryptionInfo | None,
                       key: SSECustomerKey | None = None) -> dict[str, str]:
    """Response headers reporting how an object is encrypted."""
    return sse_response_headers(info, key)
