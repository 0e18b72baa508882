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
    │   ├── InvalidBucketEncryption PutBucketEncryption XML is not one valid rule (MalformedXML)
    │   ├── BadDigest               Content-MD5 or x-amz-checksum-* does not match the body
    │   ├── InvalidPart             Complete names a part that is missing or has another ETag
    │   ├── InvalidPartOrder        Complete lists parts out of ascending order
    │   ├── EntityTooSmall          a part other than the last is under 5 MiB
    │   ├── EntityTooLarge          object or part over its size limit
    │   └── IncompleteBody          the client sent fewer bytes than it declared
    ├── EncryptionError
    │   ├── SSEInvalidArgument      an SSE header is malformed or a combination is invalid (400)
    │   ├── SSEInvalidRequest       SSE headers not applicable to this request (400)
    │   │   └── SSECInsecureConnection  SSE-C headers over plain HTTP (400)
    │   ├── SSEBadRequest           SSE-S3/KMS headers on a read (GET/HEAD) (400)
    │   ├── SSENotImplemented       a valid S3 SSE feature we do not implement (501)
    │   ├── SSECKeyRequired         object is SSE-C and no key was given
    │   ├── SSECKeyMismatch         the given SSE-C key does not open the object (403)
    │   ├── SSENotApplicable        SSE-C key given for an object that is not SSE-C
    │   ├── KMSNotConfigured        SSE-S3/KMS asked for and no KES is configured (501)
    │   ├── KMSKeyNotFound          the named KMS key does not exist
    │   ├── KMSAccessDenied         KES refused the gateway's identity (403)
    │   ├── KMSInvalidCiphertext    KES could not decrypt a stored data key (400)
    │   ├── KMSUnavailable          no KES endpoint answered (retryable, 503)
    │   └── ObjectTampered          stored ciphertext or encryption metadata fails authentication
    ├── QuorumError (retryable: 503 SlowDown)
    │   ├── InsufficientReadQuorum
    │   └── InsufficientWriteQuorum
    └── StorageFull                 write quorum lost to full disks (retryable: 503 SlowDown)

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
    "InvalidBucketEncryption",
    "InvalidInput",
    "InvalidPart",
    "InvalidPartOrder",
    "KMSAccessDenied",
    "KMSInvalidCiphertext",
    "KMSKeyNotFound",
    "KMSNotConfigured",
    "KMSUnavailable",
    "NotFoundError",
    "ObjectLayerError",
    "ObjectNotFound",
    "ObjectTampered",
    "QuorumError",
    "SSEBadRequest",
    "SSECInsecureConnection",
    "SSECKeyMismatch",
    "SSECKeyRequired",
    "SSEInvalidArgument",
    "SSEInvalidRequest",
    "SSENotApplicable",
    "SSENotImplemented",
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


class InvalidBucketEncryption(InvalidInput):
    """A PutBucketEncryption body is not exactly one valid rule (S3 answers MalformedXML)."""


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


class SSEInvalidArgument(EncryptionError):
    """An SSE header is malformed (bad algorithm, key, MD5, context) or modes are combined.

    S3: 400 InvalidArgument; the message says which header. A retry cannot succeed."""


class SSEInvalidRequest(EncryptionError):
    """SSE headers that do not apply to this request (e.g. copy-source keys on a PUT).

    S3: 400 InvalidRequest. A retry cannot succeed."""


class SSECInsecureConnection(SSEInvalidRequest):
    """SSE-C (or copy-source SSE-C) headers arrived over plain HTTP: the key was exposed."""


class SSEBadRequest(EncryptionError):
    """SSE-S3/SSE-KMS headers on a request that reads an object (GET, HEAD). S3: 400."""


class SSENotImplemented(EncryptionError):
    """A valid S3 encryption feature we do not offer (DSSE-KMS, KMS on UploadPartCopy). 501."""


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


class KMSAccessDenied(EncryptionError):
    """KES refused the gateway's identity for this key (its policy). Not retryable."""


class KMSInvalidCiphertext(EncryptionError):
    """KES says a stored data-key ciphertext (or its context) is not authentic.

    The object's metadata was altered, or its KES key was replaced. Not retryable."""


class ObjectTampered(EncryptionError):
    """Ciphertext or encryption metadata failed authentication: a package tag, the sealed
    object key, the package order, or an impossible encrypted size. Not retryable; the data
    as stored cannot be trusted (healing from other shards may repair it)."""


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
