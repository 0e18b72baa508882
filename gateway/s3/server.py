"""The S3 ASGI application: request id, health and metrics (gateway/ops), authentication,
routing, error translation, response sending, and the one log line per request.

Every exception ends as an S3 XML error carrying the request id; an unexpected one is logged
with that id (and its traceback) and answered `InternalError`, never a bare 500 page.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

from gateway.config import GatewayConfig
from gateway.crypto.kms import KMS
from gateway.objects.api import ObjectLayer
from gateway.objects.errors import ObjectLayerError
from gateway.ops import Operations
from gateway.ops.operations import METRICS_PATH, OPS_PATHS

from .admission import GateCollector, RequestGate, auto_requests_max
from .errors import S3Error, to_s3_error
from .handlers import ROUTES
from .request import Context, Response, S3Request, new_request_id
from .router import SUBRESOURCES, Router
from .sigv4 import verify_request
from .sse import BucketDefaults, SSEService
from .xml import error_document

__all__ = ["S3Application"]

log = logging.getLogger("tessera.gateway")
SERVER_NAME = b"Tessera"


class S3Application:
    """An ASGI 3 application serving S3 over an `ObjectLayer`; `kms` is the gateway's KMS
    (None: not configured), used to check keys named by bucket encryption rules; `ops` its
    health, metrics and access log (gateway/app.py gives it the KES pool to watch)."""

    def __init__(self, config: GatewayConfig, layer: ObjectLayer, kms: KMS | None = None,
                 ops: Operations | None = None):
        self.config = config
        self.layer = layer
        self.router = Router(ROUTES)
        self.secrets = {config.access_key: config.secret_key}
        self.sse = SSEService(kms, config.auto_encryption,
                              BucketDefaults(layer, config.bucket_config_ttl))
        self.ops = ops if ops is not None else Operations(config, layer)
        self.gate = RequestGate(config.requests_max or auto_requests_max(),
                                config.requests_deadline)
        self.ops.metrics.registry.register(GateCollector(self.gate))

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        started = time.monotonic()
        request_id = new_request_id()
        state = _Exchange(send)
        req: S3Request | None = None
        status, code = 500, "-"
        ctx: Context | None = None
        body = _CountingReceive(receive)
        self.ops.request_started()
        try:
            req = S3Request.from_scope(scope, self.config.domains, request_id)
            ctx = Context(req, self.layer, self.config, body, self.sse)
            # health and metrics pass the gate: a busy gateway must still look alive
            async with (contextlib.nullcontext() if req.path in OPS_PATHS else
                        self.gate.admit()):
                response = await self._handle(ctx)
                status = response.status
                await state.send_response(response, req, ctx)
        except Exception as exc:  # every failure becomes an S3 error
            error = self._as_s3_error(exc, request_id)
            status, code = error.status, error.code
            if state.started:
                log.warning("request %s: failed after the response started: %s: %s",
                            request_id, type(exc).__name__, exc)
            else:
                try:
                    await state.send_error(error, req, scope, request_id, ctx)
                except Exception as send_exc:  # the client is gone; nothing more to tell it
                    log.warning("request %s: could not send the error response: %s",
                                request_id, send_exc)
        finally:
            self.ops.request_ended(_log_fields(req, scope, request_id, status, code),
                                   body.received, state.sent, started)

    async def _handle(self, ctx: Context) -> Response:
        req = ctx.req
        if req.path in OPS_PATHS and req.method in ("GET", "HEAD"):
            return await self._operations(req)
        if not _is_post_object(req):
            req.auth = verify_request(req.method, req.raw_path, req.query, req.headers,
                                      self.secrets, self.config.region,
                                      vhost_bucket=req.bucket if req.vhost else None)
        route = self.router.match(req)
        req.operation = route.name
        _check_body_limit(req, route.max_body)
        return await route.handler(ctx)

    async def _operations(self, req: S3Request) -> Response:
        """Health (unauthenticated, as MinIO's) and metrics (MINIO_PROMETHEUS_AUTH_TYPE)."""
        req.operation = self.ops.api_of(req.path)
        if req.path == METRICS_PATH:
            denied = self.ops.metrics_denied(req.h.get("authorization"))
            if denied:
                raise S3Error("AccessDenied", denied)
        status, headers, body = await self.ops.answer(req.path, req.method, req.query)
        return Response(status, headers, body)

    def _as_s3_error(self, exc: Exception, request_id: str) -> S3Error:
        if isinstance(exc, S3Error):
            return exc
        if isinstance(exc, ObjectLayerError):
            error = to_s3_error(exc)
            if error.status >= 500:
                log.warning("request %s: %s: %s", request_id, type(exc).__name__, exc)
            return error
        log.error("request %s: unexpected %s", request_id, type(exc).__name__, exc_info=exc)
        return S3Error("InternalError")

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


def _log_fields(req: S3Request | None, scope: dict[str, Any], request_id: str, status: int,
                code: str) -> dict[str, object]:
    """The access-log fields known here (gateway/ops/access_log.py says what never goes in)."""
    client = scope.get("client") or ("-", 0)
    fields: dict[str, object] = {"id": request_id, "api": req.operation if req else "-",
                                 "method": scope.get("method", "-")}
    if req is not None and req.bucket:
        fields["bucket"] = req.bucket
        if req.key is not None:
            fields["key"] = req.key
    elif req is None:
        fields["path"] = scope.get("path", "-")
    if req is not None and req.query:
        fields["query"] = ",".join(sorted({name for name, _ in req.query}))
    fields.update({"status": status, "code": code, "remote": client[0],
                   "tls": 1 if scope.get("scheme") == "https" else 0})
    return fields


class _CountingReceive:
    """The ASGI receive callable, counting request body bytes for the metrics and the log."""

    __slots__ = ("_receive", "received")

    def __init__(self, receive: Any):
        self._receive = receive
        self.received = 0

    async def __call__(self) -> dict[str, Any]:
        message = await self._receive()
        self.received += len(message.get("body", b""))
        return message


def _is_post_object(req: S3Request) -> bool:
    """A browser upload (PostObject): its signature and policy are form fields, which the
    handler reads and verifies (handlers/post.py) before it stores anything."""
    return (req.method == "POST" and req.key is None and bool(req.bucket)
            and not any(name in SUBRESOURCES for name in req.args)
            and req.h.get("content-type", "").lower().lstrip().startswith("multipart/form-data"))


def _check_body_limit(req: S3Request, max_body: int) -> None:
    """Refuse a declared body over the route's limit before reading a byte of it."""
    declared = req.h.get("x-amz-decoded-content-length", req.h.get("content-length", "0"))
    size = int(declared) if declared.strip().isdigit() else 0
    if max_body and size > max_body:
        code = "EntityTooLarge" if max_body >= 1024**3 else "MaxMessageLengthExceeded"
        raise S3Error(code, f"The body of {size} bytes exceeds the maximum of {max_body} "
                            "bytes for this request.")


class _Exchange:
    """Sends one response over ASGI and remembers how far it got."""

    def __init__(self, send: Any):
        self._send = send
        self.started = False
        self.sent = 0

    def _headers(self, headers: dict[str, str], request_id: str,
                 close: bool) -> list[tuple[bytes, bytes]]:
        out = [(b"server", SERVER_NAME), (b"x-amz-request-id", request_id.encode())]
        out += [(k.lower().encode("latin-1"), v.encode("utf-8", "surrogateescape"))
                for k, v in headers.items()]
        if close:
            out.append((b"connection", b"close"))
        return out

    async def send_response(self, response: Response, req: S3Request, ctx: Context) -> None:
        length = response.length if response.length is not None else len(response.body)
        headers = dict(response.headers)
        if length is not None:
            headers["content-length"] = str(length)
        close = ctx.unread_body
        try:
            await self._send({"type": "http.response.start", "status": response.status,
                              "headers": self._headers(headers, req.request_id, close)})
            self.started = True
            if response.stream is None or req.method == "HEAD":
                await self._send({"type": "http.response.body", "body": response.body})
                self.sent = len(response.body) if req.method != "HEAD" else 0
                return
            async for chunk in response.stream:
                await self._send({"type": "http.response.body", "body": chunk,
                                  "more_body": True})
                self.sent += len(chunk)
            await self._send({"type": "http.response.body", "body": b""})
        finally:
            if response.on_close is not None:
                await response.on_close()

    async def send_error(self, error: S3Error, req: S3Request | None, scope: dict[str, Any],
                         request_id: str, ctx: Context | None) -> None:
        resource = req.resource if req else scope.get("path", "/")
        body = b""
        if scope.get("method") != "HEAD" and error.status != 304:
            body = error_document(error.code, error.message, resource, request_id,
                                  error.fields)
        headers = {"content-type": "application/xml", "content-length": str(len(body))}
        headers.update(error.headers)
        close = ctx.unread_body if ctx is not None else True
        await self._send({"type": "http.response.start", "status": error.status,
                          "headers": self._headers(headers, request_id, close)})
        self.started = True
        await self._send({"type": "http.response.body", "body": body})
        self.sent = len(body)
