"""A lean asyncio S3 client for load generation: keep-alive HTTP/1.1, SigV4 with UNSIGNED-PAYLOAD.

boto3 spends more CPU per request than the gateway does on small objects; on a 2-core machine
the load generator would then measure itself. This client signs headers only and streams
bodies from memoryviews, so nearly all CPU left goes to the system under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import hashlib
import hmac
from collections.abc import Callable, Iterable
from urllib.parse import quote

__all__ = ["S3Connection", "S3Error"]

_EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


class S3Error(RuntimeError):
    def __init__(self, status: int, body: bytes):
        super().__init__(f"HTTP {status}: {body[:200]!r}")
        self.status = status


def _signing_key(secret: str, date: str, region: str) -> bytes:
    key = hmac.new(f"AWS4{secret}".encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return key


class S3Connection:
    """One keep-alive connection; requests on it are sequential."""

    def __init__(self, host: str, port: int, access: str, secret: str,
                 region: str = "us-east-1"):
        self.host, self.port = host, port
        self.access, self.secret, self.region = access, secret, region
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._keys: dict[str, bytes] = {}

    async def _connect(self) -> None:
        self._reader, self._writer = await asyncio.open_connection(
            self.host, self.port, limit=1 << 20)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None

    def _headers(self, method: str, path: str, query: str, length: int | None) -> str:
        now = datetime.datetime.now(datetime.UTC)
        amz_date = now.strftime("%Y%m%dT%H%M%SZ")
        date = amz_date[:8]
        host = f"{self.host}:{self.port}"
        payload = "UNSIGNED-PAYLOAD" if length else _EMPTY_SHA256
        canonical_headers = (f"host:{host}\nx-amz-content-sha256:{payload}\n"
                             f"x-amz-date:{amz_date}\n")
        signed = "host;x-amz-content-sha256;x-amz-date"
        canonical = "\n".join([method, path, query, canonical_headers, signed, payload])
        scope = f"{date}/{self.region}/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = self._keys.get(date)
        if key is None:
            key = self._keys[date] = _signing_key(self.secret, date, self.region)
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        lines = [
            f"{method} {path}{'?' + query if query else ''} HTTP/1.1",
            f"Host: {host}",
            f"X-Amz-Date: {amz_date}",
            f"X-Amz-Content-Sha256: {payload}",
            f"Authorization: AWS4-HMAC-SHA256 Credential={self.access}/{scope}, "
            f"SignedHeaders={signed}, Signature={signature}",
        ]
        if length is not None:
            lines.append(f"Content-Length: {length}")
        return "\r\n".join(lines) + "\r\n\r\n"

    async def request(self, method: str, bucket: str, key: str = "", *,
                      body: memoryview | bytes | None = None, query: str = "",
                      sink: bool = False, chunk: int = 1 << 20,
                      stream: Iterable[bytes] | None = None, length: int | None = None,
                      on_chunk: Callable[[bytes], None] | None = None,
                      ) -> tuple[int, bytes, int]:
        """(status, body or b"" when sink, body length). Raises S3Error on >= 300.

        A body is `body` (sent in `chunk`-sized slices) or `stream` of `length` bytes in
        total; `on_chunk` sees each piece of a sunk response body as it arrives.
        """
        if self._writer is None:
            await self._connect()
        assert self._reader is not None and self._writer is not None
        path = "/" + quote(bucket) + ("/" + quote(key, safe="/~") if key else "")
        if body is not None:
            length = len(body)
            view = memoryview(body)
            stream = (view[start : start + chunk] for start in range(0, len(view), chunk))
        elif stream is None:
            length = 0 if method == "PUT" else None
        self._writer.write(self._headers(method, path, query, length).encode())
        for piece in stream or ():
            self._writer.write(piece)
            await self._writer.drain()
        await self._writer.drain()
        status, headers = await self._read_head()
        received, data = await self._read_body(headers, method, sink, on_chunk)
        if headers.get("connection", "").lower() == "close":
            await self.close()
        if status >= 300:
            raise S3Error(status, data)
        return status, data, received

    async def _read_head(self) -> tuple[int, dict[str, str]]:
        assert self._reader is not None
        head = await self._reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return status, headers

    async def _read_body(self, headers: dict[str, str], method: str, sink: bool,
                         on_chunk: Callable[[bytes], None] | None = None) -> tuple[int, bytes]:
        assert self._reader is not None
        if method == "HEAD":
            return 0, b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            total = 0
            while True:
                size = int((await self._reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self._reader.readline()
                    break
                piece = await self._reader.readexactly(size)
                await self._reader.readline()
                total += size
                if not sink:
                    parts.append(piece)
            return total, b"".join(parts)
        remaining = int(headers.get("content-length", "0"))
        total = remaining
        if not sink:
            return total, await self._reader.readexactly(remaining)
        while remaining:
            piece = await self._reader.read(min(remaining, 1 << 20))
            if not piece:
                raise ConnectionError("connection closed mid-body")
            remaining -= len(piece)
            if on_chunk is not None:
                on_chunk(piece)
        return total, b""
