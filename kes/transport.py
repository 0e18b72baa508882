"""A lean async keep-alive HTTP/1.1-over-TLS connection pool for the KES client's small requests.

Why not httpx: its pool (httpcore) rescans every connection for every queued request, which at
32 requests in flight cost more CPU than the requests themselves (5.5 ms of client CPU per
generate+decrypt pair, 2.2 ms at 1 in flight), and even with a custom transport its request and
URL models cost ~0.3 ms per call. Here a deque of idle connections per host makes taking or
returning one O(1), and requests are written as bytes. Bodies are small, so each request and
response is read whole. A request that fails on a *reused* connection before any answer arrived
(the server closed it while idle) is retried once on a fresh connection; anything else raises
ConnectFailed (nothing was sent) or ExchangeFailed.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections import deque
from dataclasses import dataclass

__all__ = ["ConnectFailed", "ExchangeFailed", "KeepAlivePool", "Reply", "TransportError"]

_MAX_HEADER = 64 * 1024
_MAX_BODY = 16 << 20


class _Conn:
    __slots__ = ("generation", "reader", "used", "writer")

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                 generation: int = 0):
        self.reader, self.writer = reader, writer
        self.used = time.monotonic()
        self.generation = generation  # the pool's TLS context it was made with

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class TransportError(Exception):
    """The request got no complete HTTP answer."""


class ConnectFailed(TransportError):
    """No connection (refused, unreachable, TLS handshake failed): nothing was sent."""


class ExchangeFailed(TransportError):
    """The connection broke, or the answer was not valid HTTP, after the request was sent."""


class _Stale(Exception):
    """A reused idle connection turned out closed before it answered."""


@dataclass(frozen=True)
class Reply:
    status: int
    headers: dict[str, str]  # lower-case names
    body: bytes


class KeepAlivePool:
    """HTTP/1.1 over TLS with per-host idle connection reuse."""

    def __init__(self, ssl_context: ssl.SSLContext | None, *, max_idle: int = 64,
                 idle_expiry: float = 60.0):
        self.ssl_context = ssl_context
        self.max_idle = max_idle
        self.idle_expiry = idle_expiry
        self._idle: dict[tuple[str, int], deque[_Conn]] = {}
        self._generation = 0

    def replace_context(self, ssl_context: ssl.SSLContext | None) -> None:
        """New connections use `ssl_context` (a reloaded client certificate): idle ones made
        with the old context are closed now, busy ones when their request is done."""
        self.ssl_context = ssl_context
        self._generation += 1
        for idle in self._idle.values():
            while idle:
                idle.pop().close()

    def _take(self, key: tuple[str, int]) -> _Conn | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if now - conn.used < self.idle_expiry and not conn.reader.at_eof():
                return conn
            conn.close()
        return None

    def _give_back(self, key: tuple[str, int], conn: _Conn) -> None:
        idle = self._idle.setdefault(key, deque())
        if len(idle) >= self.max_idle or conn.generation != self._generation:
            conn.close()
            return
        conn.used = time.monotonic()
        idle.append(conn)

    async def _connect(self, host: str, port: int) -> _Conn:
        try:
            reader, writer = await asyncio.open_connection(
                host, port, ssl=self.ssl_context,
                server_hostname=host if self.ssl_context else None, limit=_MAX_HEADER)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectFailed(str(exc) or type(exc).__name__) from exc
        return _Conn(reader, writer, self._generation)

    async def request(self, host: str, port: int, method: str, target: str,
                      body: bytes | None = None, headers: dict[str, str] | None = None) -> Reply:
        """One request to `host:port` (TLS unless the pool has no context); `target` is the
        already-escaped path."""
        key = (host, port)
        head = _request_head(method, target, f"{host}:{port}", body, headers or {})
        body = body or b""
        conn = self._take(key)
        if conn is not None:
            try:
                return await self._exchange(key, conn, head, body, reused=True)
            except _Stale:
                pass
        conn = await self._connect(host, port)
        try:
            return await self._exchange(key, conn, head, body, reused=False)
        except _Stale as exc:
            raise ExchangeFailed("server closed the connection") from exc

    async def _exchange(self, key: tuple[str, int], conn: _Conn, head: bytes, body: bytes,
                        reused: bool) -> Reply:
        done = False
        try:
            conn.writer.write(head + body)
            await conn.writer.drain()
            status, headers, keep = await _read_head(conn.reader, reused)
            content = await _read_body(conn.reader, headers)
            done = True
        except (_Stale, TransportError):
            raise
        except (OSError, ssl.SSLError, asyncio.IncompleteReadError, ValueError) as exc:
            if reused and not done:
                raise _Stale from exc
            raise ExchangeFailed(str(exc) or type(exc).__name__) from exc
        finally:
            if not done:
                conn.close()
        if keep:
            self._give_back(key, conn)
        else:
            conn.close()
        return Reply(status, headers, content)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            while idle:
                idle.pop().close()


def _request_head(method: str, target: str, host: str, body: bytes | None,
                  headers: dict[str, str]) -> bytes:
    lines = [f"{method} {target} HTTP/1.1", f"Host: {host}"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    if body is not None or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body or b'')}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


async def _read_head(reader: asyncio.StreamReader,
                     reused: bool) -> tuple[int, dict[str, str], bool]:
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as exc:
        if reused and not exc.partial:
            raise _Stale from exc
        raise ExchangeFailed("server closed the connection mid-response") from exc
    except asyncio.LimitOverrunError as exc:
        raise ExchangeFailed("response header too large") from exc
    lines = raw.decode("latin-1").split("\r\n")
    try:
        version, code = lines[0].split(" ", 2)[:2]
        status = int(code)
    except ValueError:
        raise ExchangeFailed(f"bad status line {lines[0]!r}") from None
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)}
    connection = headers.get("connection", "").lower()
    keep = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
    return status, headers, keep


async def _read_body(reader: asyncio.StreamReader, fields: dict[str, str]) -> bytes:
    if fields.get("transfer-encoding", "").lower() == "chunked":
        out = bytearray()
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while await reader.readuntil(b"\r\n") != b"\r\n":
                    pass
                return bytes(out)
            if len(out) + size > _MAX_BODY:
                raise ExchangeFailed("response body too large")
            out += await reader.readexactly(size)
            await reader.readexactly(2)
    if "content-length" in fields:
        length = int(fields["content-length"])
        if length > _MAX_BODY:
            raise ExchangeFailed("response body too large")
        return await reader.readexactly(length)
    return await reader.read(_MAX_BODY)  # no length: until the server closes
