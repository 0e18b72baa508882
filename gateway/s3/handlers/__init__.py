"""The S3 operations and the route table that selects them."""

from __future__ import annotations

from gateway.objects.api import MAX_PART_SIZE, MAX_SINGLE_PUT

from ..router import Route
from ..tagging import MAX_TAGGING_BODY
from . import bucket, copy, listing, multipart, objects, post, tagging

__all__ = ["ROUTES"]

SMALL = 64 * 1024
XML_DELETE = objects.MAX_DELETE_BODY
XML_COMPLETE = multipart.MAX_COMPLETE_BODY
TAGGING = MAX_TAGGING_BODY

ROUTES: list[Route] = [
    # service
    Route("ListBuckets", "GET", "service", bucket.list_buckets),
    # buckets
    Route("CreateBucket", "PUT", "bucket", bucket.create_bucket, max_body=SMALL),
    Route("HeadBucket", "HEAD", "bucket", bucket.head_bucket),
    Route("DeleteBucket", "DELETE", "bucket", bucket.delete_bucket),
    Route("GetBucketLocation", "GET", "bucket", bucket.get_bucket_location, ("location",)),
    Route("GetBucketVersioning", "GET", "bucket", bucket.get_bucket_versioning,
          ("versioning",)),
    Route("GetBucketAcl", "GET", "bucket", bucket.get_acl, ("acl",)),
    Route("GetBucketEncryption", "GET", "bucket", bucket.bucket_encryption, ("encryption",)),
    Route("PutBucketEncryption", "PUT", "bucket", bucket.bucket_encryption, ("encryption",)),
    Route("DeleteBucketEncryption", "DELETE", "bucket", bucket.bucket_encryption,
          ("encryption",)),
    Route("GetBucketTagging", "GET", "bucket", tagging.bucket_tagging, ("tagging",)),
    Route("PutBucketTagging", "PUT", "bucket", tagging.bucket_tagging, ("tagging",),
          max_body=TAGGING),
    Route("DeleteBucketTagging", "DELETE", "bucket", tagging.bucket_tagging, ("tagging",)),
    Route("ListObjectsV2", "GET", "bucket", listing.list_objects_v2, ("list-type",)),
    Route("ListObjects", "GET", "bucket", listing.list_objects_v1),
    Route("ListObjectVersions", "GET", "bucket", listing.list_object_versions, ("versions",)),
    Route("ListMultipartUploads", "GET", "bucket", multipart.list_multipart_uploads,
          ("uploads",)),
    Route("DeleteObjects", "POST", "bucket", objects.delete_objects, ("delete",),
          max_body=XML_DELETE),
    # a browser upload: authenticated by its form fields, not headers (server.py)
    Route("PostObject", "POST", "bucket", post.post_object, max_body=post.MAX_POST_BODY),
    # objects
    Route("PutObject", "PUT", "object", objects.put_object, max_body=MAX_SINGLE_PUT),
    Route("CopyObject", "PUT", "object", copy.copy_object, header="x-amz-copy-source"),
    Route("GetObject", "GET", "object", objects.get_object),
    Route("HeadObject", "HEAD", "object", objects.head_object),
    Route("DeleteObject", "DELETE", "object", objects.delete_object),
    Route("GetObjectAcl", "GET", "object", bucket.get_acl, ("acl",)),
    Route("GetObjectTagging", "GET", "object", tagging.object_tagging, ("tagging",)),
    Route("PutObjectTagging", "PUT", "object", tagging.object_tagging, ("tagging",),
          max_body=TAGGING),
    Route("DeleteObjectTagging", "DELETE", "object", tagging.object_tagging, ("tagging",)),
    # multipart
    Route("CreateMultipartUpload", "POST", "object", multipart.create_multipart_upload,
          ("uploads",)),
    Route("UploadPart", "PUT", "object", multipart.upload_part, ("partNumber", "uploadId"),
          max_body=MAX_PART_SIZE),
    Route("UploadPartCopy", "PUT", "object", copy.upload_part_copy,
          ("partNumber", "uploadId"), header="x-amz-copy-source"),
    Route("CompleteMultipartUpload", "POST", "object", multipart.complete_multipart_upload,
          ("uploadId",), max_body=XML_COMPLETE),
    Route("AbortMultipartUpload", "DELETE", "object", multipart.abort_multipart_upload,
          ("uploadId",)),
    Route("ListParts", "GET", "object", multipart.list_parts, ("uploadId",)),
]
