"""Pieces every handler uses: validated bucket and key, integer query arguments, the owner
element, and XML responses."""

from __future__ import annotations

import hashlib

from ..errors import S3Error
from ..names import check_bucket_name, check_key
from ..request import Context, Response
from ..xml import Element, render

__all__ = ["bucket_of", "check_acl_headers", "check_write_headers", "int_arg", "object_of",
           "owner_element", "version_arg", "xml_response"]

# Write headers for features we do not have: refused, never silently dropped (a client that
# sends If-None-Match: * relies on it not to overwrite; one that locks expects it honoured).
_UNSUPPORTED_WRITE_HEADERS = {
    "if-match": "Conditional writes", "if-none-match": "Conditional writes",
    "x-amz-object-lock-mode": "Object lock",
    "x-amz-object-lock-retain-until-date": "Object lock",
    "x-amz-object-lock-legal-hold": "Object lock",
    "x-amz-website-redirect-location": "Website redirects",
}
STORAGE_CLASSES = ("STANDARD", "REDUCED_REDUNDANCY")
# Canned ACLs that say what is true of everything here: only the one owner has access.
OWNER_ONLY_ACLS = frozenset({"private", "bucket-owner-full-control", "bucket-owner-read"})


def xml_response(root: Element, status: int = 200,
                 headers: dict[str, str] | None = None) -> Response:
    out = {"content-type": "application/xml"}
    out.update(headers or {})
    return Response(status, out, render(root))


def bucket_of(ctx: Context) -> str:
    bucket = ctx.req.bucket
    assert bucket is not None  # the router only sends bucket and object requests here
    check_bucket_name(bucket)
    return bucket


def object_of(ctx: Context) -> tuple[str, str]:
    bucket = bucket_of(ctx)
    key = ctx.req.key
    assert key is not None
    check_key(key)
    return bucket, key


def int_arg(ctx: Context, name: str, default: int, low: int, high: int | None = None,
            *, clamp: bool = False) -> int:
    """An integer query argument in [low, high]; `clamp` caps at high instead of failing."""
    text = ctx.req.args.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise S3Error("InvalidArgument", f"Argument {name} must be an integer.",
                      ArgumentName=name, ArgumentValue=text[:64]) from None
    if value < low:
        raise S3Error("InvalidArgument", f"Argument {name} must be at least {low}.",
                      ArgumentName=name, ArgumentValue=text[:64])
    if high is not None and value > high:
        if clamp:
            return high
        raise S3Error("InvalidArgument", f"Argument {name} must be at most {high}.",
                      ArgumentName=name, ArgumentValue=text[:64])
    return value


def check_write_headers(ctx: Context) -> None:
    """PutObject, CopyObject and CreateMultipartUpload: refuse what we cannot honour."""
    for name, feature in _UNSUPPORTED_WRITE_HEADERS.items():
        if name in ctx.req.h:
            raise S3Error("NotImplemented", f"{feature} ({name}) are not supported by this "
                                            "server.")
    check_acl_headers(ctx)
    storage_class = ctx.req.h.get("x-amz-storage-class")
    if storage_class is not None and storage_class not in STORAGE_CLASSES:
        raise S3Error("InvalidStorageClass")


XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"


def version_arg(value: str | None) -> str | None:
    """A versionId the object layer should look up: `null` names the only version S3 shows of
    a key in a bucket that was never versioned (ListObjectVersions reports it), the latest."""
    return None if value in (None, "", "null") else value


def check_acl_headers(ctx: Context) -> None:
    """Buckets and objects are private to the owner, as on an AWS bucket with ACLs disabled
    (BucketOwnerEnforced): an ACL that would give anyone else access is refused the way AWS
    refuses it there, never stored privately while the client believes otherwise (s3cmd
    --acl-public printed a public URL that answered 403). `private` (rclone sends it on every
    write) and the bucket-owner ACLs state the truth and pass."""
    acl = ctx.req.h.get("x-amz-acl")
    grants = sorted(name for name in ctx.req.h if name.startswith("x-amz-grant-"))
    if acl is not None and acl.strip().lower() not in OWNER_ONLY_ACLS:
        raise S3Error("AccessControlListNotSupported",
                      f"The bucket does not allow ACLs: objects are private to the owner "
                      f"(x-amz-acl: {acl.strip()[:40]}).")
    if grants:
        raise S3Error("AccessControlListNotSupported",
                      f"The bucket does not allow ACLs ({grants[0]}).")


def owner_element(parent: Element, ctx: Context, tag: str = "Owner") -> Element:
    owner = parent.add(tag)
    owner.add("ID", hashlib.sha256(ctx.config.access_key.encode()).hexdigest())
    owner.add("DisplayName", ctx.config.access_key)
    return owner
