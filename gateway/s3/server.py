"""The S3 ASGI application: request id, health, authentication, routing, error translation,
response sending, and the one log line per request.

Every exception ends as an S3 XML error carrying the request id; an unexpected one is logged
with that id (and its traceback) and answered `InternalError`, never a bare 500 page.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from gateway.config import GatewayConfig
from gateway.crypto.kms import KMS
from gateway.objects.api import ObjectLayer
from gateway.objects.errors import ObjectLayerError

from .errors import S3Error, to_s3_error
from .handlers import ROUTES
from .request import Context, Response, S3Request, new_request_id
from .router import Router
from .sigv4 import verify_request
from .sse import BucketDefaults, SSEService
from .xml import error_document

__all__ = ["S3Application"]

log = logging.getLogger("tessera.gateway")
access_log = logging.getLogger("tessera.gateway.access")

HEALTH_PATHS = {"/minio/health/live", "/minio/health/ready", "/minio/health/cluster"}
SERVER_NAME = b"Tessera"


class S3Application:
    """An ASGI 3 application serving S3 over an `ObjectLayer`; `kms` is the gateway's KMS
    (None: not configured), used to check keys named by bucket encryption rules."""

    def __init__(self, config: GatewayConfig, layer: ObjectLayer, kms: KMS | None = None):
        self.config = config
        self.layer = layer
        self.router = Router(ROUTES)
        self.secrets = {config.access_key: config.secret_key}
        self.sse = SSEService(kms, config.auto_encryption,
                              BucketDefaults(layer, config.bucket_config_ttl))

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
        try:
            req = S3Request.from_scope(scope, self.config.domains, request_id)
            ctx = Context(req, self.layer, self.config, receive, self.sse)
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
            self._log(req, scope, request_id, status, code, state.sent, started)

    async def _handle(self, ctx: Context) -> Response:
        req = ctx.req
        if req.path in HEALTH_PATHS and req.method in ("GET", "HEAD"):
            return await self._health(req.path)
        req.auth = verify_request(req.method, req.raw_path, req.query, req.headers,
                                  self.secrets, self.config.region,
                                  vhost_bucket=req.bucket if req.vhost else None)
        route = self.router.match(req)
        req.operation = route.name
        _check_body_limit(req, route.max_body)
        return await route.handler(ctx)

    async def _health(self, path: str) -> Response:
        """Unauthenticated, GET and HEAD, as MinIO's. live and ready: this process serves
        (MinIO learned that readiness tied to quorum keeps a forming cluster out of service).
        cluster: every erasure set has its write quorum, else 503 (a layer without a probe,
        like the in-memory one, is always whole)."""
        headers = {"content-type": "text/plain"}
        probe = getattr(self.layer, "probe_cluster", None)
        if path != "/minio/health/cluster" or probe is None:
            return Response(200, headers)
        health = await probe()
        if health.sets:
            headers["x-minio-write-quorum"] = str(min(s.write_quorum for s in health.sets))
        return Response(200 if health.ok else 503, headers)

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

    def _log(self, req: S3Request | None, scope: dict[str, Any], request_id: str, status: int,
             code: str, sent: int, started: float) -> None:
        # Query values are left out: presigned URLs carry credentials and signatures there.
        query = ",".join(sorted({k for k, _ in req.query})) if req else ""
        access_log.info(
            "%s %s %s%s %s %d %s %d %.1fms", request_id, scope.get("method", "-"),
            req.path if req else scope.get("path", "-"), f"?{query}" if query else "",
            req.operation if req else "-", status, code, sent,
            (time.monotonic() - started) * 1000)


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
