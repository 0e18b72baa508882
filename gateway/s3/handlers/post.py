"""PostObject: a browser upload to a bucket as multipart/form-data, authenticated by a signed
POST policy in its form fields (boto3 `generate_presigned_post`, minio `presigned_post_policy`).

The fields before `file` are read (bounded), the signature and the policy checked, then the
file streams to the object layer like a PutObject body: content-length-range is enforced while
it streams, and the layer commits only after the file's closing delimiter, so a rejected or
aborted upload stores nothing.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Mapping
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

from gateway.crypto.sse import SSEOperation
from gateway.objects.api import MAX_SINGLE_PUT

from ..body import OFFLOAD_THRESHOLD, offload
from ..checksums import Checksum, ChecksumRequest, parse_checksum_request
from ..errors import S3Error
from ..formdata import FormReader, form_boundary
from ..metadata import put_metadata
from ..names import check_key
from ..postpolicy import PostPolicy, parse_policy
from ..request import Context, Response
from ..sigv2 import verify_v2_post
from ..sigv4 import ALGORITHM, SigningContext, verify_post_policy
from ..sse import encryption_headers, write_sse
from ..xml import Element
from .common import OWNER_ONLY_ACLS, STORAGE_CLASSES, bucket_of, xml_response

__all__ = ["FIELDS_LIMIT", "MAX_POST_BODY", "post_object"]

FIELDS_LIMIT = 20 * 1024  # bytes of form fields before the file (names and values)
MAX_POST_BODY = MAX_SINGLE_PUT + FIELDS_LIMIT + 64 * 1024  # the file, fields, framing
_SUCCESS_STATUSES = ("200", "201", "204")


async def post_object(ctx: Context) -> Response:
    bucket = bucket_of(ctx)
    form = FormReader(ctx, form_boundary(ctx.req.h.get("content-type", "")),
                      fields_limit=FIELDS_LIMIT)
    fields, upload = await form.read_fields()
    ctx.req.auth = _authenticate(ctx, fields)
    policy = parse_policy(fields["policy"])
    key = fields.get("key")
    if key is None:
        raise S3Error("InvalidArgument", "Bucket POST must contain a field named 'key'.",
                      ArgumentName="key")
    key = key.replace("${filename}", upload.filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1])
    fields["key"] = key
    check_key(key)
    ctx.req.key = key  # for the log line and error Resource
    policy.check(fields, bucket, time.time())
    _check_unsupported(fields)
    sse, request = await write_sse(ctx, bucket, SSEOperation.PUT_OBJECT, fields)
    body = UploadBody(form.file_data(), policy, parse_checksum_request(_checksum_fields(fields)))
    metadata = put_metadata(fields, body.checksums)
    info = await ctx.layer.put_object(bucket, key, body, size=None, metadata=metadata, sse=sse)
    await form.drain()
    headers = {"etag": f'"{info.etag}"', "location": _location(ctx, bucket, key)}
    headers.update(encryption_headers(info.encryption, request.customer_key))
    return _success(fields, headers, bucket, key, info.etag)


def _authenticate(ctx: Context, fields: Mapping[str, str]) -> SigningContext:
    """SigV4 (x-amz-algorithm ... x-amz-signature) or SigV2 (AWSAccessKeyId, signature)."""
    secrets = {ctx.config.access_key: ctx.config.secret_key}
    if "policy" not in fields:
        raise S3Error("AccessDenied", "Anonymous access is not allowed; a POST needs a signed "
                                      "policy.")
    if "x-amz-signature" in fields or "x-amz-algorithm" in fields:
        for name in ("x-amz-algorithm", "x-amz-credential", "x-amz-date", "x-amz-signature"):
            if not fields.get(name):
                raise S3Error("InvalidArgument", f"Bucket POST must contain a field named "
                                                 f"'{name}'.", ArgumentName=name)
        if fields["x-amz-algorithm"] != ALGORITHM:
            raise S3Error("InvalidArgument", "x-amz-algorithm only supports "
                                             "\"AWS4-HMAC-SHA256\".")
        if "x-amz-security-token" in fields:
            raise S3Error("InvalidAccessKeyId", "Temporary credentials are not supported.")
        return verify_post_policy(fields["policy"], fields["x-amz-credential"],
                                  fields["x-amz-date"], fields["x-amz-signature"], secrets,
                                  ctx.config.region)
    if "awsaccesskeyid" in fields and "signature" in fields:
        return verify_v2_post(fields["policy"], fields["awsaccesskeyid"],
                              fields["signature"], secrets)
    raise S3Error("AccessDenied", "A POST policy needs its signature fields (x-amz-signature, "
                                  "or AWSAccessKeyId and signature).")


def _check_unsupported(fields: Mapping[str, str]) -> None:
    """As PutObject: refuse what we cannot honour rather than drop it."""
    acl = fields.get("acl")
    if acl is not None and acl.strip().lower() not in OWNER_ONLY_ACLS:
        raise S3Error("AccessControlListNotSupported",
                      f"The bucket does not allow ACLs: objects are private to the owner "
                      f"(acl: {acl.strip()[:40]}).")
    for name in ("tagging", "x-amz-website-redirect-location", "x-amz-object-lock-mode",
                 "x-amz-object-lock-retain-until-date", "x-amz-object-lock-legal-hold"):
        if name in fields:
            raise S3Error("NotImplemented", f"The form field {name} is not supported by this "
                                            "server.")
    storage_class = fields.get("x-amz-storage-class")
    if storage_class is not None and storage_class not in STORAGE_CLASSES:
        raise S3Error("InvalidStorageClass")


def _checksum_fields(fields: Mapping[str, str]) -> dict[str, str]:
    return {name: value for name, value in fields.items()
            if name.startswith("x-amz-checksum-") and name != "x-amz-checksum-algorithm"}


class UploadBody:
    """The file's bytes for the object layer, held to the policy's content-length-range and
    the form's x-amz-checksum-* while they stream; raises instead of ending when one fails."""

    def __init__(self, data: AsyncIterator[bytes], policy: PostPolicy,
                 checksum: ChecksumRequest | None):
        self._data = data
        self._low, self._high = policy.length_range or (0, MAX_SINGLE_PUT)
        self._high = min(self._high, MAX_SINGLE_PUT)
        self._request = checksum
        self._checksum = Checksum(checksum.algorithm) if checksum else None
        self.checksums: dict[str, str] = {}
        self.received = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._blocks()

    async def _blocks(self) -> AsyncIterator[bytes]:
        async for chunk in self._data:
            self.received += len(chunk)
            if self.received > self._high:
                raise S3Error("EntityTooLarge", "Your proposed upload exceeds the maximum "
                                                "allowed size.",
                              ProposedSize=str(self.received), MaxSizeAllowed=str(self._high))
            if self._checksum is not None:
                if len(chunk) >= OFFLOAD_THRESHOLD:
                    await offload(self._checksum.update, chunk)
                else:
                    self._checksum.update(chunk)
            yield chunk
        if self.received < self._low:
            raise S3Error("EntityTooSmall", ProposedSize=str(self.received),
                          MinSizeAllowed=str(self._low))
        self._verify_checksum()

    def _verify_checksum(self) -> None:
        if self._checksum is None or self._request is None:
            return
        computed = self._checksum.b64()
        if self._request.expected is not None and self._request.expected != computed:
            raise S3Error("BadDigest", f"The {self._request.algorithm} you specified did not "
                                       "match the calculated checksum.")
        self.checksums[self._request.algorithm] = computed


def _location(ctx: Context, bucket: str, key: str) -> str:
    host = ctx.req.host or "localhost"
    path = f"/{quote(key, safe='/~')}" if ctx.req.vhost else \
        f"/{bucket}/{quote(key, safe='/~')}"
    return f"{ctx.req.scheme}://{host}{path}"


def _redirect(target: str, bucket: str, key: str, etag: str) -> str | None:
    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None  # S3 ignores a redirect it cannot use and answers with the status
    query = urlencode({"bucket": bucket, "key": key, "etag": f'"{etag}"'})
    query = f"{parts.query}&{query}" if parts.query else query
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _success(fields: Mapping[str, str], headers: dict[str, str], bucket: str, key: str,
             etag: str) -> Response:
    target = fields.get("success_action_redirect") or fields.get("redirect")
    if target:
        location = _redirect(target, bucket, key, etag)
        if location is not None:
            return Response(303, {**headers, "location": location})
    status = fields.get("success_action_status", "204")
    if status not in _SUCCESS_STATUSES:
        status = "204"
    if status == "201":
        root = Element("PostResponse")
        root.add("Location", headers["location"])
        root.add("Bucket", bucket)
        root.add("Key", key)
        root.add("ETag", f'"{etag}"')
        return xml_response(root, 201, headers)
    return Response(int(status), headers)
