"""Errors of the object layer: what S3 handlers catch and translate (gateway/s3/errors.py).

    ObjectLayerError
    ├── NotFoundError
    │   ├── BucketNotFound          bucket does not exist
    │   ├── ObjectNotFound          key has no live version (or its latest is a delete marker)
    │   ├── VersionNotFound         a named version does not exist
    │   └── UploadNotFound          multipart upload id unknown, completed or aborted
    ├── ConflictError
    │   ├── BucketAlreadyExists     (we are single-tenant: S3's BucketAlreadyOwnedByYou)
    │   └── BucketNotEmpty
    ├── InvalidInput
    │   ├── BadDigest               Content-MD5 or x-amz-checksum-* does not match the body
    │   ├── InvalidPart             Complete names a part that is missing or has another ETag
    │   ├── InvalidPartOrder        Complete lists parts out of ascending order
    │   ├── EntityTooSmall          a part other than the last is under 5 MiB
    │   ├── EntityTooLarge          object or part over its size limit
    │   └── IncompleteBody          the client sent fewer bytes than it declared
    ├── EncryptionError
    │   ├── SSECKeyRequired         object is SSE-C and no key was given
    │   ├── SSECKeyMismatch         the given SSE-C key does not open the object (403)
    │   ├── SSENotApplicable        SSE-C key given for an object that is not SSE-C
    │   ├── KMSNotConfigured        SSE-S3/KMS asked for and no KES is configured (501)
    │   ├── KMSKeyNotFound          the named KMS key does not exist
    │   └── KMSUnavailable          no KES endpoint answered (retryable, 503)
    ├── QuorumError (retryable: 503 SlowDown)
    │   ├── InsufficientReadQuorum
    │   └── InsufficientWriteQuorum
    └── StorageFull                 write quorum lost to full disks (retryable, 507/503)

Every error keeps its cause (`raise ... from exc`).
"""

from __future__ import annotations

__all__ = [
    "BadDigest",
    "BucketAlreadyExists",
    "BucketNotEmpty",
    "BucketNotFound",
    "ConflictError",
    "EncryptionError",
    "EntityTooLarge",
    "EntityTooSmall",
    "IncompleteBody",
    "InsufficientReadQuorum",
    "InsufficientWriteQuorum",
    "InvalidInput",
    "InvalidPart",
    "InvalidPartOrder",
    "KMSKeyNotFound",
    "KMSNotConfigured",
    "KMSUnavailable",
    "NotFoundError",
    "ObjectLayerError",
    "ObjectNotFound",
    "QuorumError",
    "SSECKeyMismatch",
    "SSECKeyRequired",
    "SSENotApplicable",
    "StorageFull",
    "UploadNotFound",
    "VersionNotFound",
]


class ObjectLayerError(Exception):
    """Base of every object-layer error. `retryable` says whether the same request may succeed
    later unchanged."""

    retryable = False


class NotFoundError(ObjectLayerError):
    """Something named by the request does not exist."""


class BucketNotFound(NotFoundError):
    """The bucket does not exist."""


class ObjectNotFound(NotFoundError):
    """The key has no live version (none, or its latest is a delete marker)."""


class VersionNotFound(NotFoundError):
    """The named version of the key does not exist."""


class UploadNotFound(NotFoundError):
    """The multipart upload id is unknown, or was completed or aborted."""


class ConflictError(ObjectLayerError):
    """The request conflicts with the current state."""


class BucketAlreadyExists(ConflictError):
    """CreateBucket of a bucket that exists (we are single-tenant: it is the caller's)."""


class BucketNotEmpty(ConflictError):
    """DeleteBucket of a bucket that still holds objects."""


class InvalidInput(ObjectLayerError):
    """The request's content is wrong; the same request will fail again."""


class BadDigest(InvalidInput):
    """Content-MD5 or an x-amz-checksum-* value does not match the body received."""

    def __init__(self, message: str = "digest mismatch", *, algorithm: str = "MD5"):
        super().__init__(message)
        self.algorithm = algorithm


class InvalidPart(InvalidInput):
    """CompleteMultipartUpload names a part that was not uploaded or has another ETag."""


class InvalidPartOrder(InvalidInput):
    """CompleteMultipartUpload lists parts out of ascending order."""


class EntityTooSmall(InvalidInput):
    """A part other than the last is smaller than the 5 MiB minimum."""


class EntityTooLarge(InvalidInput):
    """An object or part exceeds its maximum size."""


class IncompleteBody(InvalidInput):
    """The client sent fewer bytes than Content-Length (or disconnected)."""


class EncryptionError(ObjectLayerError):
    """Server-side encryption could not be applied or undone."""


class SSECKeyRequired(EncryptionError):
    """The object is SSE-C encrypted and the request carries no customer key."""


class SSECKeyMismatch(EncryptionError):
    """The customer key does not open the object's sealed key."""


class SSENotApplicable(EncryptionError):
    """SSE-C parameters were sent for an object that is not SSE-C encrypted."""


class KMSNotConfigured(EncryptionError):
    """SSE-S3 or SSE-KMS was requested (or is needed to read) and no KMS is configured."""


class KMSKeyNotFound(EncryptionError):
    """The KMS key named by the request does not exist."""


class KMSUnavailable(EncryptionError):
    """No KES endpoint could be reached; retry later."""

    retryable = True


class QuorumError(ObjectLayerError):
    """Too few storage nodes answered; the message says which failed and why. Retryable."""

    retryable = True


class InsufficientReadQuorum(QuorumError):
    """Fewer than k nodes could serve the object's metadata or shards."""


class InsufficientWriteQuorum(QuorumError):
    """Fewer than the write quorum of nodes accepted the shards or the commit."""


class StorageFull(ObjectLayerError):
    """Write quorum was lost because nodes are out of disk space."""

    retryable = True
