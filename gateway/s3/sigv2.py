"""AWS Signature Version 2 (HMAC-SHA1), header and presigned query forms, for compatibility:
boto3 still presigns URLs with it by default for us-east-1, and older tools sign with it.

The string to sign is S3's: method, Content-MD5, Content-Type, Date (Expires for a presigned
URL), the x-amz-* headers, and the resource (path as sent, the bucket first even for a
virtual-host request, and the subresources that select an operation).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Mapping, Sequence
from email.utils import parsedate_to_datetime

from .errors import S3Error
from .sigv4 import MAX_SKEW_SECONDS, SigningContext

__all__ = ["is_v2_presigned", "verify_v2", "verify_v2_post"]

# Query names that are part of the signed resource (the list botocore's HmacV1Auth signs).
SIGNED_SUBRESOURCES = frozenset({
    "accelerate", "acl", "cors", "defaultObjectAcl", "location", "logging", "partNumber",
    "policy", "requestPayment", "torrent", "versioning", "versionId", "versions", "website",
    "uploads", "uploadId", "response-content-type", "response-content-language",
    "response-expires", "response-cache-control", "response-content-disposition",
    "response-content-encoding", "delete", "lifecycle", "tagging", "restore", "storageClass",
    "notification", "replication", "analytics", "metrics", "inventory", "select",
    "select-type", "object-lock",
})


def is_v2_presigned(query: Sequence[tuple[str, str]]) -> bool:
    names = {k for k, _ in query}
    return "AWSAccessKeyId" in names and "Signature" in names


def _resource(raw_path: bytes, vhost_bucket: str | None,
              query: Sequence[tuple[str, str]]) -> str:
    path = raw_path.decode("latin-1") or "/"
    if vhost_bucket:
        path = f"/{vhost_bucket}{path}"
    subresources = sorted((k, v) for k, v in query if k in SIGNED_SUBRESOURCES)
    if subresources:
        path += "?" + "&".join(f"{k}={v}" if v else k for k, v in subresources)
    return path


def _string_to_sign(method: str, date: str, headers: Mapping[str, str],
                    amz: Mapping[str, str], resource: str) -> str:
    lines = [method, headers.get("content-md5", "").strip(),
             headers.get("content-type", "").strip(), date]
    lines += [f"{name}:{amz[name]}" for name in sorted(amz)]
    return "\n".join(lines) + "\n" + resource


def _signature(secret: str, text: str) -> str:
    digest = hmac.new(secret.encode(), text.encode("utf-8", "surrogateescape"), hashlib.sha1)
    return base64.b64encode(digest.digest()).decode()


def _amz_headers(headers: Sequence[tuple[str, str]]) -> dict[str, str]:
    amz: dict[str, list[str]] = {}
    for name, value in headers:
        if name.startswith("x-amz-"):
            amz.setdefault(name, []).append(value.strip())
    return {name: ",".join(values) for name, values in amz.items()}


def _check(secrets: Mapping[str, str], access: str, text: str, given: str) -> None:
    secret = secrets.get(access)
    if secret is None:
        raise S3Error("InvalidAccessKeyId")
    if not hmac.compare_digest(_signature(secret, text).encode(), given.encode()):
        raise S3Error("SignatureDoesNotMatch")


def verify_v2(method: str, raw_path: bytes, vhost_bucket: str | None,
              query: Sequence[tuple[str, str]], headers: Sequence[tuple[str, str]],
              secrets: Mapping[str, str], now: float | None = None) -> SigningContext:
    """Verify a SigV2 request (Authorization `AWS key:sig`, or AWSAccessKeyId/Signature/
    Expires in the query). The payload of a V2 request is never signed."""
    now = time.time() if now is None else now
    header_map = dict(headers)
    resource = _resource(raw_path, vhost_bucket, query)
    if is_v2_presigned(query):
        params = dict(query)
        expires = params.get("Expires", "")
        if not expires.isdigit():
            raise S3Error("AccessDenied", "Query-string authentication requires the Signature, "
                                          "Expires and AWSAccessKeyId parameters.")
        if now > int(expires):
            raise S3Error("AccessDenied", "Request has expired.")
        amz = _amz_headers(headers)
        amz.update({k.lower(): v for k, v in query if k.lower().startswith("x-amz-")})
        text = _string_to_sign(method, expires, header_map, amz, resource)
        _check(secrets, params["AWSAccessKeyId"], text, params["Signature"])
        return SigningContext(params["AWSAccessKeyId"], b"", "", "", "", "UNSIGNED-PAYLOAD",
                              presigned=True)
    access, sep, given = header_map.get("authorization", "")[4:].rpartition(":")
    if not sep or not access:
        raise S3Error("AccessDenied", "The Authorization header is malformed.")
    date_text = header_map.get("x-amz-date") or header_map.get("date", "")
    try:
        when = parsedate_to_datetime(date_text).timestamp()
    except (TypeError, ValueError, IndexError):
        raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date "
                                      "header.") from None
    if abs(when - now) > MAX_SKEW_SECONDS:
        raise S3Error("RequestTimeTooSkewed")
    # with x-amz-date present the Date line is empty: x-amz-date is signed among x-amz-*
    date_line = "" if "x-amz-date" in header_map else date_text.strip()
    text = _string_to_sign(method, date_line, header_map, _amz_headers(headers), resource)
    _check(secrets, access.strip(), text, given.strip())
    return SigningContext(access.strip(), b"", "", "", "", "UNSIGNED-PAYLOAD")


def verify_v2_post(policy: str, access_key: str, signature: str,
                   secrets: Mapping[str, str]) -> SigningContext:
    """A browser upload's SigV2 form signature: HMAC-SHA1 of the base64 `policy` field."""
    _check(secrets, access_key.strip(), policy, signature.strip())
    return SigningContext(access_key.strip(), b"", "", "", "", "UNSIGNED-PAYLOAD")
