"""The node's errors and how each one crosses the wire: a gRPC status code plus a reason.

Every error a client can see is a `NodeError`; the server turns it into the status code below
and puts `reason` in the trailing metadata key "tessera-reason" (the table at the top of
proto/storage.proto). Anything else raised while serving is first passed through `translate`.

    NodeError
    ├── NotFound                     NOT_FOUND
    │   ├── NoSuchBucket, NoSuchKey, NoSuchVersion, NoSuchUpload, NoSuchPart
    ├── BucketAlreadyExists          ALREADY_EXISTS
    ├── PreconditionFailed           FAILED_PRECONDITION
    │   ├── BucketNotEmpty, WriteNotFound
    ├── Corrupt                      DATA_LOSS
    ├── DiskFull                     RESOURCE_EXHAUSTED
    ├── InvalidArgument              INVALID_ARGUMENT
    ├── DiskIOError                  INTERNAL  (reason "IOError")
    └── InternalError                INTERNAL  (reason "Internal": a bug, logged with its trace)
"""

from __future__ import annotations

import errno
import sqlite3

import grpc

__all__ = [
    "REASON_KEY",
    "BucketAlreadyExists",
    "BucketNotEmpty",
    "Corrupt",
    "DiskFull",
    "DiskIOError",
    "InternalError",
    "InvalidArgument",
    "NoSuchBucket",
    "NoSuchKey",
    "NoSuchPart",
    "NoSuchUpload",
    "NoSuchVersion",
    "NodeError",
    "NotFound",
    "PreconditionFailed",
    "WriteNotFound",
    "translate",
]

REASON_KEY = "tessera-reason"
_DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)


class NodeError(Exception):
    """Base of every error the node reports to a client."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "Internal"


class NotFound(NodeError):
    code = grpc.StatusCode.NOT_FOUND


class NoSuchBucket(NotFound):
    """The bucket does not exist on this node. A retry succeeds only after MakeBucket."""

    reason = "NoSuchBucket"


class NoSuchKey(NotFound):
    """The key has no version on this node (or its latest is a delete marker, for reads)."""

    reason = "NoSuchKey"


class NoSuchVersion(NotFound):
    """The named version is not held by this node (never written, rolled back or collected)."""

    reason = "NoSuchVersion"


class NoSuchUpload(NotFound):
    """The multipart upload is unknown: never created, aborted or completed."""

    reason = "NoSuchUpload"


class NoSuchPart(NotFound):
    """A part (or the named attempt of it) is not staged in the upload / the version."""

    reason = "NoSuchPart"


class BucketAlreadyExists(NodeError):
    """MakeBucket of a bucket this node already has."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "BucketAlreadyExists"


class PreconditionFailed(NodeError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class BucketNotEmpty(PreconditionFailed):
    """DeleteBucket of a bucket that still holds objects."""

    reason = "BucketNotEmpty"


class WriteNotFound(PreconditionFailed):
    """Commit or PutPart of shard data never written here, aborted, or swept. Not retryable
    without writing the data again."""

    reason = "WriteNotFound"


class Corrupt(NodeError):
    """Stored data fails its hash, is short, or is missing: heal it from the other shards."""

    code = grpc.StatusCode.DATA_LOSS
    reason = "Corrupt"


class DiskFull(NodeError):
    """The disk ran out of space (ENOSPC). Nothing partial was kept; a retry can succeed once
    space is freed."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "DiskFull"


class InvalidArgument(NodeError):
    """The request is malformed: bad name, bad geometry, a block whose hash does not match."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "InvalidArgument"


class DiskIOError(NodeError):
    """The disk failed an operation (other than running out of space); nothing partial kept."""

    code = grpc.StatusCode.INTERNAL
    reason = "IOError"


class InternalError(NodeError):
    """A bug in the node: the request failed, the trace is in the node's log."""

    code = grpc.StatusCode.INTERNAL
    reason = "Internal"


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _DISK_FULL_ERRNOS
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        return code == sqlite3.SQLITE_FULL or "disk is full" in str(exc)
    return False


def translate(exc: BaseException) -> NodeError:
    """The NodeError a client should see for `exc` (which it keeps as its cause)."""
    if isinstance(exc, NodeError):
        return exc
    if _is_disk_full(exc):
        err: NodeError = DiskFull("disk full")
    elif isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError):
        err = InternalError(f"internal error: {type(exc).__name__}")
    elif isinstance(exc, OSError | sqlite3.DatabaseError):
        err = DiskIOError(f"I/O error: {exc}")
    else:
        err = InternalError(f"internal error: {type(exc).__name__}")
    err.__cause__ = exc
    return err
