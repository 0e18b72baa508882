"""The route table: each S3 operation is a record of method, target (service, bucket or object),
the query parameters and header that select it, its body limit and its handler.

A request carrying an S3 subresource (`?lifecycle`, `?policy`, ...) that no route declares is
answered 501 NotImplemented, never routed to a plain bucket or object operation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from .errors import S3Error
from .request import Context, Response, S3Request

__all__ = ["SUBRESOURCES", "Handler", "Route", "Router"]

Handler = Callable[[Context], Awaitable[Response]]

# Query names that select another S3 operation on the same path (AWS's list, plus MinIO's).
SUBRESOURCES = frozenset({
    "accelerate", "acl", "analytics", "attributes", "cors", "delete", "encryption",
    "intelligent-tiering", "inventory", "legal-hold", "lifecycle", "location", "logging",
    "metadataConfiguration", "metrics", "notification", "object-lock", "ownershipControls",
    "policy", "policyStatus", "publicAccessBlock", "renameObject", "replication",
    "requestPayment", "restore", "retention", "select", "session", "tagging", "torrent",
    "uploadId", "uploads", "versioning", "versions", "website", "events", "replication-metrics",
    "replication-reset", "replication-check", "lambda",
})


@dataclass(frozen=True)
class Route:
    """One S3 operation. `query`: parameters that must be present; `header`: a header that
    must be present (CopyObject is a PUT with x-amz-copy-source)."""

    name: str
    method: str
    target: str  # "service" | "bucket" | "object"
    handler: Handler
    query: tuple[str, ...] = ()
    header: str | None = None
    max_body: int = 0  # bytes the handler may read; enforced before reading

    def matches(self, req: S3Request, target: str, subresources: set[str]) -> bool:
        if self.method != req.method or self.target != target:
            return False
        if not subresources <= set(self.query):
            return False
        if not all(q in req.args for q in self.query):
            return False
        return self.header is None or self.header in req.h

    @property
    def specificity(self) -> int:
        return len(self.query) + (1 if self.header else 0)


class Router:
    def __init__(self, routes: Sequence[Route]):
        self.routes = sorted(routes, key=lambda r: -r.specificity)

    def match(self, req: S3Request) -> Route:
        target = "object" if req.key is not None else "bucket" if req.bucket else "service"
        subresources = {name for name in req.args if name in SUBRESOURCES}
        for route in self.routes:
            if route.matches(req, target, subresources):
                return route
        if subresources:
            names = ", ".join(sorted(subresources))
            raise S3Error("NotImplemented", f"The operation ({req.method} ?{names}) is not "
                                            "implemented by this server.")
        raise S3Error("MethodNotAllowed")
