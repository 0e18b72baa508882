"""The async KES client the gateways use: one mTLS keep-alive pool over several KES servers.

(HTTP goes through transport.KeepAlivePool rather than httpx, whose pool and models cost several
times the CPU of the requests; see transport.py for the measurements.)

Each call starts at a random endpoint and walks the pool in order. It moves on after a
connection error, a timeout or a 5xx other than 501 (the endpoint is then sidelined for
`backoff` seconds, after which one call probes it); any other answer, 4xx included, is final.
If every healthy endpoint failed, the sidelined ones are tried once more. Each attempt is bounded
by `timeout` and the whole call by `call_timeout`, so a hung server (SIGSTOP) costs at most one
attempt timeout. Errors are the typed tree of kes.errors, matched on status and exact text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import random
import re
import ssl
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from common.endpoint_health import EndpointHealth, EndpointState

from .errors import (
    APIError,
    KESUnavailable,
    KeyExists,
    KeyNotFound,
    NotAllowed,
    error_from_reply,
)
from .identity import api_key_certificate
from .transport import KeepAlivePool, Reply, TransportError

__all__ = ["APIError", "KESClient", "KESConfig", "KESStatistics", "KESUnavailable", "KeyInfo",
           "client_ssl_context"]

ENV_ENDPOINT = "MINIO_KMS_KES_ENDPOINT"
ENV_KEY_FILE = "MINIO_KMS_KES_KEY_FILE"
ENV_CERT_FILE = "MINIO_KMS_KES_CERT_FILE"
ENV_KEY_PASSWORD = "MINIO_KMS_KES_KEY_PASSWORD"
ENV_CAPATH = "MINIO_KMS_KES_CAPATH"
ENV_KEY_NAME = "MINIO_KMS_KES_KEY_NAME"
ENV_API_KEY = "MINIO_KMS_KES_API_KEY"
ENV_TIMEOUT = "TESSERA_KES_TIMEOUT"
ENV_CALL_TIMEOUT = "TESSERA_KES_CALL_TIMEOUT"
ENV_BACKOFF = "TESSERA_KES_BACKOFF"
_ELLIPSIS = re.compile(r"\{(\d+)\.\.\.(\d+)\}")


@dataclass(frozen=True)
class KESConfig:
    """How to reach the KES pool (MinIO's environment variables, plus our timeouts)."""

    endpoints: tuple[str, ...]      # MINIO_KMS_KES_ENDPOINT, comma-separated https URLs
    cert_file: str = ""             # MINIO_KMS_KES_CERT_FILE: client certificate (PEM)
    key_file: str = ""              # MINIO_KMS_KES_KEY_FILE: its private key (PEM)
    key_password: str = ""          # MINIO_KMS_KES_KEY_PASSWORD: for an encrypted key file
    capath: str = ""                # MINIO_KMS_KES_CAPATH: CA file or directory; "" = system
    key_name: str = ""              # MINIO_KMS_KES_KEY_NAME: the default key
    timeout: float = 2.0            # seconds per attempt on one endpoint
    call_timeout: float = 6.0       # seconds for a whole call across the pool
    backoff: float = 30.0           # seconds a failed endpoint stays sidelined
    api_key: str = ""               # MINIO_KMS_KES_API_KEY (kes:v1:...) instead of cert files
    max_in_flight: int = 64         # concurrent requests (and connections) of one client

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> KESConfig:
        endpoints = tuple(url for e in env.get(ENV_ENDPOINT, "").split(",") if e.strip()
                          for url in expand_ellipsis(e.strip().rstrip("/")))
        if not endpoints:
            raise ValueError(f"{ENV_ENDPOINT} is not set")
        for e in endpoints:
            if not e.startswith("https://"):
                raise ValueError(f"{ENV_ENDPOINT}: {e!r} is not an https:// URL")
        cert, key, api_key = (env.get(ENV_CERT_FILE, ""), env.get(ENV_KEY_FILE, ""),
                              env.get(ENV_API_KEY, ""))
        if api_key and (cert or key):
            raise ValueError(f"set either {ENV_API_KEY} or {ENV_CERT_FILE}/{ENV_KEY_FILE}, "
                             "not both")
        if bool(cert) != bool(key):
            raise ValueError(f"{ENV_CERT_FILE} and {ENV_KEY_FILE} go together")
        return cls(endpoints, cert, key, env.get(ENV_KEY_PASSWORD, ""), env.get(ENV_CAPATH, ""),
                   env.get(ENV_KEY_NAME, ""), float(env.get(ENV_TIMEOUT, 2.0)),
                   float(env.get(ENV_CALL_TIMEOUT, 6.0)), float(env.get(ENV_BACKOFF, 30.0)),
                   api_key=api_key)


def expand_ellipsis(url: str) -> list[str]:
    """MinIO's `{1...3}` pattern: https://kes{1...3}:7373 -> kes1, kes2, kes3."""
    m = _ELLIPSIS.search(url)
    if not m:
        return [url]
    lo, hi = m.group(1), m.group(2)
    width = len(lo) if lo.startswith("0") else 0
    return [u for i in range(int(lo), int(hi) + 1)
            for u in expand_ellipsis(url[:m.start()] + str(i).zfill(width) + url[m.end():])]


@dataclass(frozen=True)
class KeyInfo:
    name: str
    algorithm: str
    created_at: str
    created_by: str


@dataclass(frozen=True)
class KESStatistics:
    """Counters for the gateway's metrics: calls made, failovers (moves to another endpoint),
    calls that failed because no endpoint answered, and each endpoint's health."""

    calls: int
    failovers: int
    unavailable: int
    endpoints: tuple[EndpointState, ...]


def client_ssl_context(config: KESConfig) -> ssl.SSLContext:
    """Verify servers against CAPATH (a file, or every PEM file of a directory) and present
    the client certificate."""
    ctx = ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    if config.capath:
        ca = Path(config.capath)
        files = sorted(p for p in ca.iterdir() if p.is_file()) if ca.is_dir() else [ca]
        for f in files:
            try:
                ctx.load_verify_locations(cafile=str(f))
            except (ssl.SSLError, ValueError):
                if not ca.is_dir():
                    raise
    if config.api_key:
        _load_api_key(ctx, config.api_key)
    elif config.cert_file and config.key_file:
        ctx.load_cert_chain(config.cert_file, config.key_file, config.key_password or None)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


def _load_api_key(ctx: ssl.SSLContext, api_key: str) -> None:
    """Present the API key's self-signed certificate (the stdlib loads chains from files only,
    so they pass through a private temporary directory)."""
    cert, key = api_key_certificate(api_key)
    with tempfile.TemporaryDirectory(prefix="kes-api-key-") as tmp:
        for name, data in (("cert.pem", cert), ("key.pem", key)):
            fd = os.open(os.path.join(tmp, name), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
        ctx.load_cert_chain(os.path.join(tmp, "cert.pem"), os.path.join(tmp, "key.pem"))


class _Endpoint:
    def __init__(self, url: str, backoff: float):
        self.url = url
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname:
            raise ValueError(f"KES endpoint {url!r} is not an https:// URL")
        self.host, self.port = parts.hostname, parts.port or 443
        self.base = parts.path.rstrip("/")
        self.health = EndpointHealth(url, backoff=backoff)


class _Failed(Exception):
    """One attempt failed in a way that lets another endpoint try (why = short reason)."""

    def __init__(self, why: str):
        super().__init__(why)
        self.why = why


_JSON = {"Content-Type": "application/json"}


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


class KESClient:
    """Async client for a pool of KES servers; use as `async with KESClient(cfg) as kes:`."""

    def __init__(self, config: KESConfig, *, rng: random.Random | None = None):
        if not config.endpoints:
            raise ValueError("KESConfig.endpoints is empty")
        self.config = config
        self._rng = rng or random.Random()
        self._endpoints = [_Endpoint(u, config.backoff) for u in config.endpoints]
        self._pool = KeepAlivePool(client_ssl_context(config), max_idle=config.max_in_flight)
        self._slots = asyncio.Semaphore(config.max_in_flight)
        self._calls = self._failovers = self._unavailable = 0

    async def __aenter__(self) -> KESClient:
        return self

    async def __aexit__(self, *_exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._pool.aclose()

    def reload_identity(self) -> None:
        """Re-read the client certificate, key and CA files (MinIO reloads them on SIGHUP):
        new connections present the new identity, calls in flight finish on theirs. A file
        that cannot be loaded raises (OSError, ValueError) and the old identity stays."""
        self._pool.replace_context(client_ssl_context(self.config))

    # ---- transport and failover ----

    async def _attempt(self, endpoint: _Endpoint, method: str, path: str,
                       body: bytes | None) -> Reply:
        headers = _JSON if body is not None else {}
        try:
            # waiting for a slot is the caller's load, not the endpoint's fault: not timed here
            async with self._slots:
                async with asyncio.timeout(self.config.timeout):
                    reply = await self._pool.request(endpoint.host, endpoint.port, method,
                                                     endpoint.base + path, body, headers)
        except TimeoutError:
            raise _Failed(f"no answer within {self.config.timeout:g}s") from None
        except (TransportError, ssl.SSLError, OSError) as exc:
            raise _Failed(_describe(exc)) from None
        if reply.status >= 500 and reply.status != 501:
            raise _Failed(f"HTTP {reply.status} {_message(reply)}")
        return reply

    def _order(self) -> list[_Endpoint]:
        start = self._rng.randrange(len(self._endpoints))
        return self._endpoints[start:] + self._endpoints[:start]

    async def _send(self, method: str, path: str, body: bytes | None = None) -> Reply:
        self._calls += 1
        failures: list[tuple[str, str]] = []
        try:
            async with asyncio.timeout(self.config.call_timeout):
                reply = await self._walk(method, path, body, failures)
        except TimeoutError:
            failures.append(("pool", f"call deadline of {self.config.call_timeout:g}s passed"))
            reply = None
        if reply is None:
            self._unavailable += 1
            raise KESUnavailable(failures)
        if reply.status >= 400:
            raise error_from_reply(reply.status, _message(reply))
        return reply

    async def _walk(self, method: str, path: str, body: bytes | None,
                    failures: list[tuple[str, str]]) -> Reply | None:
        order = self._order()
        skipped = []
        for endpoint in order:
            if not endpoint.health.acquire():
                skipped.append(endpoint)
                continue
            reply = await self._try(endpoint, method, path, body, failures)
            if reply is not None:
                return reply
        for endpoint in skipped:  # every healthy one failed: one pass over the sidelined
            reply = await self._try(endpoint, method, path, body, failures)
            if reply is not None:
                return reply
        return None

    async def _try(self, endpoint: _Endpoint, method: str, path: str, body: bytes | None,
                   failures: list[tuple[str, str]]) -> Reply | None:
        if failures:
            self._failovers += 1
        try:
            reply = await self._attempt(endpoint, method, path, body)
        except _Failed as exc:
            endpoint.health.failure(exc.why)
            failures.append((endpoint.url, exc.why))
            return None
        # a cancelled call (the S3 client went away) says nothing about the endpoint: not
        # recorded; a probe it held expires by itself after the backoff
        endpoint.health.success()
        return reply

    async def _json(self, method: str, path: str, doc: dict | None = None) -> Any:
        body = json.dumps(doc, separators=(",", ":")).encode() if doc is not None else None
        reply = await self._send(method, path, body)
        return json.loads(reply.body) if reply.body else None

    # ---- key API ----

    async def generate_key(self, name: str, context: bytes = b"") -> tuple[bytes, bytes]:
        """A fresh 32-byte data key and its ciphertext under key `name`, bound to `context`."""
        doc = await self._json("POST", f"/v1/key/generate/{quote(name, safe='')}",
                               {"context": _b64(context)} if context else {})
        return base64.b64decode(doc["plaintext"]), base64.b64decode(doc["ciphertext"])

    async def decrypt(self, name: str, ciphertext: bytes, context: bytes = b"") -> bytes:
        body: dict[str, str] = {"ciphertext": _b64(ciphertext)}
        if context:
            body["context"] = _b64(context)
        doc = await self._json("POST", f"/v1/key/decrypt/{quote(name, safe='')}", body)
        return base64.b64decode(doc["plaintext"])

    async def encrypt(self, name: str, plaintext: bytes, context: bytes = b"") -> bytes:
        body = {"plaintext": _b64(plaintext)}
        if context:
            body["context"] = _b64(context)
        doc = await self._json("POST", f"/v1/key/encrypt/{quote(name, safe='')}", body)
        return base64.b64decode(doc["ciphertext"])

    async def create_key(self, name: str) -> None:
        await self._send("POST", f"/v1/key/create/{quote(name, safe='')}")

    async def import_key(self, name: str, key: bytes, cipher: str = "AES256") -> None:
        await self._json("POST", f"/v1/key/import/{quote(name, safe='')}",
                         {"key": _b64(key), "cipher": cipher})

    async def describe_key(self, name: str) -> KeyInfo:
        doc = await self._json("GET", f"/v1/key/describe/{quote(name, safe='')}")
        return KeyInfo(doc["name"], doc.get("algorithm", ""), doc.get("created_at", ""),
                       doc.get("created_by", ""))

    async def delete_key(self, name: str) -> None:
        await self._send("DELETE", f"/v1/key/delete/{quote(name, safe='')}")

    async def list_keys(self, prefix: str = "") -> list[str]:
        """Names starting with `prefix` (first page: up to 1024 names)."""
        # "*" rather than an empty path: real KES redirects /v1/key/list to /v1/key/list/
        doc = await self._json("GET", f"/v1/key/list/{quote(prefix, safe='') or '*'}")
        return list(doc.get("names") or [])

    async def hmac(self, name: str, message: bytes) -> bytes:
        doc = await self._json("PUT", f"/v1/key/hmac/{quote(name, safe='')}",
                               {"message": _b64(message)})
        return base64.b64decode(doc["hmac"])

    async def status(self) -> dict[str, Any]:
        return await self._json("GET", "/v1/status")

    async def version(self) -> str:
        return (await self._json("GET", "/version"))["version"]

    async def ensure_default_key(self, name: str) -> None:
        """What MinIO does at start: generate with it; create it when it does not exist. A 403
        is tolerated as MinIO does. KESUnavailable (one line naming every endpoint) means no
        KES server answered."""
        try:
            await self.generate_key(name, b"{}")
        except KeyNotFound:
            with contextlib.suppress(KeyExists):
                await self.create_key(name)
        except NotAllowed:
            pass

    def statistics(self) -> KESStatistics:
        return KESStatistics(self._calls, self._failovers, self._unavailable,
                             tuple(e.health.snapshot() for e in self._endpoints))


def _message(reply: Reply) -> str:
    """kms-go's parseErrorResponse: JSON `message` (an `error` field wins), else the body."""
    text = reply.body[: 1 << 20]
    if reply.headers.get("content-type", "").startswith("application/json"):
        try:
            doc = json.loads(text)
            return str(doc.get("error") or doc.get("message") or "")
        except (ValueError, AttributeError):
            pass
    return text.decode(errors="replace").strip()


def _describe(exc: BaseException) -> str:
    """A short reason for one failed attempt, from the innermost cause."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        if isinstance(cause, ssl.SSLError):
            return f"tls: {cause.reason or cause}"
        if isinstance(cause, ConnectionResetError):
            return "connection reset"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    return text.splitlines()[0][:200]

