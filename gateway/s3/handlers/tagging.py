"""Tagging operations: Get/Put/DeleteObjectTagging (the tag set in the version's metadata,
changed in place) and Get/Put/DeleteBucketTagging (a bucket configuration blob)."""

from __future__ import annotations

from ..body import read_small_body
from ..errors import S3Error
from ..request import Context, Response
from ..tagging import MAX_TAGGING_BODY, parse_tagging_xml, render_tagging
from .common import bucket_of, object_of, version_arg

__all__ = ["BUCKET_TAGGING_CONFIG", "bucket_tagging", "object_tagging"]

BUCKET_TAGGING_CONFIG = "tagging"  # name for ObjectLayer.get/put_bucket_config
_XML = {"content-type": "application/xml"}


async def object_tagging(ctx: Context) -> Response:
    """GET, PUT and DELETE ?tagging on an object (the current version, or `versionId`). A tag
    change rewrites only the version's metadata, never its data, and keeps Last-Modified."""
    bucket, key = object_of(ctx)
    version = version_arg(ctx.req.args.get("versionId"))
    method = ctx.req.method
    if method == "GET":
        _, tags = await ctx.layer.object_tags(bucket, key, version_id=version)
        return Response(200, dict(_XML), render_tagging(tags))
    if method == "PUT":
        body = await read_small_body(ctx, MAX_TAGGING_BODY)
        tags = parse_tagging_xml(body)
    else:
        tags = {}
    await ctx.layer.update_metadata(bucket, key, version or "", tags=tags)
    return Response(200 if method == "PUT" else 204)


async def bucket_tagging(ctx: Context) -> Response:
    """GET, PUT and DELETE ?tagging on a bucket; an empty tag set removes the bucket's."""
    bucket = bucket_of(ctx)
    await ctx.layer.head_bucket(bucket)
    method = ctx.req.method
    if method == "GET":
        stored = await ctx.layer.get_bucket_config(bucket, BUCKET_TAGGING_CONFIG)
        if not stored:
            raise S3Error("NoSuchTagSet", BucketName=bucket)
        return Response(200, dict(_XML), stored)  # the document PUT rendered below
    if method == "DELETE":
        await ctx.layer.put_bucket_config(bucket, BUCKET_TAGGING_CONFIG, None)
        return Response(204)
    body = await read_small_body(ctx, MAX_TAGGING_BODY)
    tags = parse_tagging_xml(body, bucket=True)
    await ctx.layer.put_bucket_config(bucket, BUCKET_TAGGING_CONFIG,
                                      render_tagging(tags) if tags else None)
    return Response(200)
