"""Bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket, GetBucketLocation,
GetBucketVersioning (always unversioned), GetBucketAcl, and Get/Put/DeleteBucketEncryption."""

from __future__ import annotations

from gateway.crypto.policy import (
    BUCKET_ENCRYPTION_CONFIG,
    parse_bucket_encryption,
    render_bucket_encryption,
)
from gateway.objects.errors import KMSKeyNotFound, KMSNotConfigured, SSECKeyRequired

from ..body import read_small_body
from ..errors import S3Error
from ..request import Context, Response
from ..xml import Element, find_text, iso8601, parse_xml
from .common import XSI_NS, bucket_of, check_acl_headers, owner_element, xml_response

__all__ = [
    "bucket_encryption",
    "create_bucket",
    "delete_bucket",
    "get_acl",
    "get_bucket_location",
    "get_bucket_versioning",
    "head_bucket",
    "list_buckets",
]

MAX_CONFIG_BODY = 64 * 1024


async def list_buckets(ctx: Context) -> Response:
    root = Element("ListAllMyBucketsResult")
    owner_element(root, ctx)
    buckets = root.add("Buckets")
    for info in await ctx.layer.list_buckets():
        bucket = buckets.add("Bucket")
        bucket.add("Name", info.name)
        bucket.add("CreationDate", iso8601(info.created_ns))
    return xml_response(root)


async def create_bucket(ctx: Context) -> Response:
    bucket = bucket_of(ctx)
    if ctx.req.h.get("x-amz-bucket-object-lock-enabled", "").lower() == "true":
        raise S3Error("NotImplemented", "Object lock is not supported by this server.")
    check_acl_headers(ctx)
    body = await read_small_body(ctx, MAX_CONFIG_BODY)
    if body.strip():
        config = parse_xml(body, "CreateBucketConfiguration")
        location = find_text(config, "LocationConstraint") or ""
        if location not in ("", ctx.config.region):
            raise S3Error("InvalidLocationConstraint",
                          f"The location constraint {location!r} does not match this "
                          f"server's region {ctx.config.region!r}.")
    await ctx.layer.make_bucket(bucket)
    ctx.sse.defaults.forget(bucket)  # a bucket of that name may have had a default lately
    return Response(200, {"location": f"/{bucket}"})


async def head_bucket(ctx: Context) -> Response:
    await ctx.layer.head_bucket(bucket_of(ctx))
    return Response(200, {"x-amz-bucket-region": ctx.config.region})


async def delete_bucket(ctx: Context) -> Response:
    bucket = bucket_of(ctx)
    await ctx.layer.delete_bucket(bucket)
    ctx.sse.defaults.forget(bucket)
    return Response(204)


async def get_bucket_location(ctx: Context) -> Response:
    await ctx.layer.head_bucket(bucket_of(ctx))
    region = ctx.config.region
    # S3 answers an empty constraint for us-east-1
    return xml_response(Element("LocationConstraint", "" if region == "us-east-1" else region))


async def get_bucket_versioning(ctx: Context) -> Response:
    await ctx.layer.head_bucket(bucket_of(ctx))
    return xml_response(Element("VersioningConfiguration"))


async def get_acl(ctx: Context) -> Response:
    """The only ACL we have: the owner holds FULL_CONTROL (s3cmd and some SDKs ask)."""
    bucket = bucket_of(ctx)
    if ctx.req.key is not None:
        try:
            reader = await ctx.layer.open_object(bucket, ctx.req.key)
            await reader.close()
        except SSECKeyRequired:
            pass  # it exists; reading its ACL needs no customer key
    else:
        await ctx.layer.head_bucket(bucket)
    root = Element("AccessControlPolicy")
    owner_element(root, ctx)
    grant = root.add("AccessControlList").add("Grant")
    grantee = owner_element(grant, ctx, "Grantee")
    # A grantee's type is an xsi:type attribute, as AWS writes it; s3cmd's ACL parser (info,
    # setacl) reads it unconditionally and crashes without it.
    grantee.attrs.update({"xmlns:xsi": XSI_NS, "xsi:type": "CanonicalUser"})
    grant.add("Permission", "FULL_CONTROL")
    return xml_response(root)


async def bucket_encryption(ctx: Context) -> Response:
    """GET, PUT and DELETE ?encryption: the bucket's default encryption, applied to writes
    that carry no SSE headers (gateway/crypto/policy.py)."""
    bucket = bucket_of(ctx)
    await ctx.layer.head_bucket(bucket)
    method = ctx.req.method
    if method == "GET":
        stored = await ctx.layer.get_bucket_config(bucket, BUCKET_ENCRYPTION_CONFIG)
        if not stored:
            raise S3Error("ServerSideEncryptionConfigurationNotFoundError",
                          BucketName=bucket)
        return Response(200, {"content-type": "application/xml"},
                        render_bucket_encryption(parse_bucket_encryption(stored)))
    if method == "DELETE":
        await ctx.layer.put_bucket_config(bucket, BUCKET_ENCRYPTION_CONFIG, None)
        ctx.sse.defaults.forget(bucket)
        return Response(204)
    body = await read_small_body(ctx, MAX_CONFIG_BODY)
    kms = ctx.sse.kms
    if kms is None:  # MinIO: 501 before looking at the rule
        raise KMSNotConfigured("Server side encryption specified but KMS is not configured")
    config = parse_bucket_encryption(body)
    if config.kms_key_id is not None and not await kms.key_exists(config.kms_key_id):
        raise KMSKeyNotFound(f"The KMS key {config.kms_key_id!r} does not exist.")
    await ctx.layer.put_bucket_config(bucket, BUCKET_ENCRYPTION_CONFIG,
                                      render_bucket_encryption(config))
    ctx.sse.defaults.forget(bucket)
    return Response(200)
