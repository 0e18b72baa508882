"""One S3 request as the handlers see it: decoded path, bucket and key (path-style or
virtual-host-style), query, headers, and the response type handlers return."""

from __future__ import annotations

import itertools
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from .errors import S3Error

if TYPE_CHECKING:
    from gateway.config import GatewayConfig
    from gateway.objects.api import ObjectLayer

    from .sigv4 import SigningContext

__all__ = ["Context", "Response", "S3Request", "new_request_id"]


_PROCESS_TAG = secrets.token_hex(2).upper()  # tells apart gateways started the same instant
_sequence = itertools.count()


def new_request_id() -> str:
    """Like MinIO's: time-ordered hex, unique within the cluster's logs (a per-process tag and
    counter instead of fresh randomness: os.urandom per request showed in profiles)."""
    return f"{time.time_ns():X}{_PROCESS_TAG}{next(_sequence) & 0xFFFF:04X}"


def _decode_query(raw: bytes) -> list[tuple[str, str]]:
    pairs = []
    for item in raw.decode("latin-1").split("&"):
        if not item:
            continue
        name, _, value = item.partition("=")
        pairs.append((unquote(name, errors="surrogateescape"),
                      unquote(value, errors="surrogateescape")))
    return pairs


@dataclass
class S3Request:
    """The parts of an HTTP request S3 cares about. Header names are lower-case."""

    method: str
    raw_path: bytes
    path: str
    query: list[tuple[str, str]]
    headers: list[tuple[str, str]]
    host: str
    scheme: str
    request_id: str
    bucket: str | None = None
    key: str | None = None
    args: dict[str, str] = field(default_factory=dict)  # first value of each query name
    h: dict[str, str] = field(default_factory=dict)  # headers; repeats joined with ","
    auth: SigningContext | None = None
    vhost: bool = False  # the bucket came from the Host header
    operation: str = "-"  # the route's name, for the log line

    @classmethod
    def from_scope(cls, scope: dict[str, Any], domains: tuple[str, ...],
                   request_id: str) -> S3Request:
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        raw_path = raw_path.split(b"?", 1)[0]
        headers = [(k.decode("latin-1").lower(), v.decode("utf-8", "surrogateescape"))
                   for k, v in scope["headers"]]
        h: dict[str, str] = {}
        for name, value in headers:
            h[name] = f"{h[name]},{value}" if name in h else value
        query = _decode_query(scope.get("query_string", b""))
        args: dict[str, str] = {}
        for name, value in query:
            args.setdefault(name, value)
        req = cls(method=scope["method"].upper(), raw_path=raw_path, path="", query=query,
                  headers=headers, host=h.get("host", ""), scheme=scope.get("scheme", "http"),
                  request_id=request_id, args=args, h=h)
        req.path = req._decode_path()
        req.bucket, req.key = req._locate(domains)
        return req

    def _decode_path(self) -> str:
        try:
            return unquote(self.raw_path.decode("latin-1"), encoding="utf-8", errors="strict")
        except UnicodeDecodeError:
            raise S3Error("InvalidURI") from None

    def _locate(self, domains: tuple[str, ...]) -> tuple[str | None, str | None]:
        host = self.host.lower().rsplit(":", 1)[0] if not self.host.startswith("[") else ""
        for domain in domains:
            bare = domain.rsplit(":", 1)[0]
            if host.endswith("." + bare):
                bucket = host[: -len(bare) - 1]
                key = self.path[1:] if self.path.startswith("/") else self.path
                self.vhost = True
                return bucket, key or None
        parts = self.path.lstrip("/").split("/", 1) if self.path.startswith("/") else [""]
        bucket = parts[0] or None
        key = parts[1] if len(parts) > 1 and parts[1] else None
        return bucket, key

    @property
    def resource(self) -> str:
        """The Resource element of an error: the path as S3 names it."""
        if self.bucket and self.key:
            return f"/{self.bucket}/{self.key}"
        if self.bucket:
            return f"/{self.bucket}"
        return self.path or "/"

    def content_length(self) -> int | None:
        value = self.h.get("content-length")
        if value is None:
            return None
        if not value.strip().isdigit():
            raise S3Error("InvalidArgument", "Content-Length is not a number.")
        return int(value)

    @property
    def has_body(self) -> bool:
        """Whether body bytes may follow the headers (never raises: used on error paths)."""
        value = self.h.get("content-length", "0").strip()
        return not value.isdigit() or int(value) > 0 or "transfer-encoding" in self.h


@dataclass
class Response:
    """What a handler returns: status, headers and either bytes or a stream of `length`."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    stream: AsyncIterator[bytes] | None = None
    length: int | None = None
    on_close: Any = None  # async callable run after the body is sent (or the send failed)


@dataclass
class Context:
    """Everything a handler may use: the request, the object layer, the configuration, and
    the receive callable its body streams from."""

    req: S3Request
    layer: ObjectLayer
    config: GatewayConfig
    receive: Any
    sse: Any = None  # sse.SSEService: KMS, auto-encryption, bucket default encryption
    body_started: bool = False  # a handler began reading the body
    body_complete: bool = False  # ... and read it to its end

    @property
    def unread_body(self) -> bool:
        """Body bytes may still be on the wire: the connection cannot carry another request."""
        return self.req.has_body and not self.body_complete
