"""The KES HTTP API: the route table (method, path, body limit, timeout, auth) and dispatch.

Dispatch follows KES: an unknown path gets Go's plain-text 404; a wrong method 405 with an
`Accept` header (a PUT route also takes POST); then the caller is identified from its client
certificate and authorised against the full path; then the handler runs. Every error body is
`{"message": ...}`. Handlers live in handlers.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509

from . import handlers
from .errors import APIError
from .handlers import error_response
from .http_server import App, Request, Response
from .identity import identity_of_certificate

__all__ = ["API", "ROUTES", "Route", "find_route", "identify"]

MB = 1_000_000
MIB = 1 << 20


@dataclass(frozen=True)
class Route:
    """`path` ending in `/` is a prefix; the rest of the URL path is the handler's resource."""

    method: str
    path: str
    max_body: int
    timeout: float
    auth: str  # "none" | "identify" | "verify"
    handler: Callable[..., Response]


ROUTES = (
    Route("GET", "/version", 0, 10, "none", handlers.version),
    Route("GET", "/v1/ready", 0, 15, "verify", handlers.ready),
    Route("GET", "/v1/status", 0, 15, "verify", handlers.status),
    Route("GET", "/v1/metrics", 0, 15, "verify", handlers.metrics),
    Route("GET", "/v1/api", 0, 10, "verify", handlers.list_apis),
    Route("PUT", "/v1/key/create/", 0, 15, "verify", handlers.create_key),
    Route("PUT", "/v1/key/import/", MB, 15, "verify", handlers.import_key),
    Route("GET", "/v1/key/describe/", 0, 15, "verify", handlers.describe_key),
    Route("GET", "/v1/key/list/", 0, 15, "verify", handlers.list_keys),
    Route("DELETE", "/v1/key/delete/", 0, 15, "verify", handlers.delete_key),
    Route("PUT", "/v1/key/generate/", MB, 15, "verify", handlers.generate_key),
    Route("PUT", "/v1/key/encrypt/", MB, 15, "verify", handlers.encrypt),
    Route("PUT", "/v1/key/decrypt/", MB, 15, "verify", handlers.decrypt),
    Route("PUT", "/v1/key/hmac/", MB, 15, "verify", handlers.hmac),
    Route("POST", "/v1/key/bulk/decrypt/", MIB, 15, "verify", handlers.bulk_decrypt),
    Route("GET", "/v1/policy/describe/", 0, 15, "verify", handlers.describe_policy),
    Route("GET", "/v1/policy/read/", 0, 15, "verify", handlers.read_policy),
    Route("GET", "/v1/policy/list/", 0, 15, "verify", handlers.list_policies),
    Route("GET", "/v1/identity/describe/", 0, 15, "verify", handlers.describe_identity),
    Route("GET", "/v1/identity/list/", 0, 15, "verify", handlers.list_identities),
    Route("GET", "/v1/identity/self/describe", 0, 15, "identify", handlers.self_describe),
)
_PREFIXES = sorted((r for r in ROUTES if r.path.endswith("/")), key=lambda r: -len(r.path))
_EXACT = {r.path: r for r in ROUTES if not r.path.endswith("/")}


def find_route(path: str) -> tuple[Route | None, str]:
    """The route for a decoded path and the resource after its prefix (`/v1/key/list` too)."""
    route = _EXACT.get(path)
    if route is not None:
        return route, ""
    for route in _PREFIXES:
        if path.startswith(route.path):
            return route, path[len(route.path):]
        if path == route.path[:-1]:
            return route, ""
    return None, ""


def _method_ok(route: Route, method: str) -> bool:
    return method == route.method or (route.method in ("PUT", "POST")
                                      and method in ("PUT", "POST"))


def identify(certs: list[x509.Certificate]) -> str:
    """The caller's identity from its certificates (CA certificates skipped, one leaf required)."""
    leaves = [c for c in certs if not _is_ca(c)]
    if not leaves:
        raise APIError("tls: client certificate is required", 400)
    if len(leaves) > 1:
        raise APIError("tls: received more than one client certificate", 400)
    return identity_of_certificate(leaves[0])


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        return False


class API(App):
    """Binds the route table to the server state (`handlers.State`)."""

    def __init__(self, state: handlers.State):
        self.state = state

    def limits(self, method: str, path: str) -> tuple[int, float]:
        route, _ = find_route(path)
        if route is None:
            return 0, 15.0
        return route.max_body, self._timeout(route)

    def _timeout(self, route: Route) -> float:
        override = self.state.config.api.get(route.path.rstrip("/"))
        return override.timeout if override and override.timeout else route.timeout

    def handle(self, request: Request) -> Response:
        metrics = self.state.metrics
        start = time.monotonic()
        metrics.begin()
        response = self._dispatch(request)
        metrics.end(response.status, time.monotonic() - start)
        return response

    def _dispatch(self, request: Request) -> Response:
        route, resource = find_route(request.path)
        if route is None:
            return Response(404, b"404 page not found\n", "text/plain; charset=utf-8",
                            [("X-Content-Type-Options", "nosniff")])
        if not _method_ok(route, request.method):
            return error_response(405, f"received method '{request.method}' expected "
                                  f"'{route.method}'", [("Accept", route.method)])
        try:
            identity = self._authenticate(route, request)
            return route.handler(self.state, request, resource, identity)
        except APIError as exc:
            return error_response(exc.status, exc.message)
        except Exception as exc:  # a bug: answer 500 without a trace, log one line
            self.state.log_error(f"{request.method} {request.path}: {type(exc).__name__}: {exc}")
            return error_response(500, "internal server error")

    def _authenticate(self, route: Route, request: Request) -> str:
        override = self.state.config.api.get(route.path.rstrip("/"))
        if route.auth == "none" or (override and override.skip_auth):
            return ""
        identity = identify(request.peer_certs)
        if route.auth == "verify":
            self.state.authorizer.verify(identity, request.path)
        return identity
