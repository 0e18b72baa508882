"""Request bodies, streamed: receive from the server in bounded blocks, undo aws-chunked framing,
verify every digest the client sent, and raise at the end when one does not hold.

The object layer consumes a `RequestBody` as its `BodyStream`: it commits only after the
iterator finished cleanly, so a body that fails a digest, loses its client, or comes short
leaves nothing visible. Decoding and hashing of large blocks run on the CPU pool, off the loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .checksums import Checksum, ChecksumRequest, parse_checksum_request, parse_content_md5
from .chunked import ChunkedDecoder
from .errors import S3Error
from .request import Context

__all__ = ["BLOCK_SIZE", "ClientDisconnected", "RequestBody", "offload", "open_body",
           "read_small_body", "receive_chunk"]

BLOCK_SIZE = 1024 * 1024  # bytes decoded and hashed per step (at most ~2x in memory)
OFFLOAD_THRESHOLD = 64 * 1024  # smaller work stays on the loop: a thread hop costs more
BODY_IDLE_TIMEOUT = 60.0  # seconds without a body byte before RequestTimeout (S3 uses ~20 s)
_CPU_POOL = ThreadPoolExecutor(max_workers=2, thread_name_prefix="s3-cpu")
_HEX64 = re.compile(r"^[0-9a-fA-F]{64}$")

STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
UNSIGNED = "UNSIGNED-PAYLOAD"


class ClientDisconnected(S3Error):
    """The client went away before the body ended; nothing may be stored."""

    def __init__(self) -> None:
        super().__init__("IncompleteBody", "The client disconnected before the body ended.")


async def offload(fn: Callable[..., Any], *args: Any) -> Any:
    """Run CPU-heavy work (hashing, decoding) on the small thread pool beside the loop."""
    return await asyncio.get_running_loop().run_in_executor(_CPU_POOL, fn, *args)


async def receive_chunk(ctx: Context) -> tuple[bytes, bool]:
    """The next piece of the request body off the wire and whether more follows. A client
    silent for BODY_IDLE_TIMEOUT is RequestTimeout; one that went away, ClientDisconnected."""
    ctx.body_started = True
    try:
        async with asyncio.timeout(BODY_IDLE_TIMEOUT):
            message = await ctx.receive()
    except TimeoutError:
        raise S3Error("RequestTimeout") from None
    if message["type"] == "http.disconnect":
        raise ClientDisconnected()
    more = message.get("more_body", False)
    ctx.body_complete = not more
    return message.get("body", b""), more


class RequestBody:
    """An async iterator of plaintext payload blocks; raises `S3Error` instead of ending when
    the body does not verify. `checksums` is filled with the verified x-amz-checksum-* value
    (algorithm -> base64) before the iterator ends."""

    def __init__(self, ctx: Context, *, decoder: ChunkedDecoder | None,
                 sha256: str | None, checksum: ChecksumRequest | None,
                 declared: int | None, limit: int, too_large: str = "EntityTooLarge"):
        self._ctx = ctx
        self._limit = limit
        self._too_large = too_large
        self._decoder = decoder
        self._sha256_expected = sha256
        self._sha256 = hashlib.sha256() if sha256 else None
        self._checksum_request = checksum
        self._checksum = Checksum(checksum.algorithm) if checksum else None
        self.declared = declared  # payload size the client announced, when it did
        self.received = 0  # payload bytes produced
        self.checksums: dict[str, str] = {}
        self.done = False

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._blocks()

    async def _raw_blocks(self) -> AsyncIterator[list[bytes]]:
        """Bytes off the wire, as the chunks of about BLOCK_SIZE bytes at a time."""
        pending: list[bytes] = []
        size = 0
        more = True
        while more:
            chunk, more = await receive_chunk(self._ctx)
            if chunk:
                pending.append(chunk)
                size += len(chunk)
            if size >= BLOCK_SIZE or (not more and pending):
                yield pending
                pending, size = [], 0

    def _process(self, raw: bytes) -> list[bytes]:
        pieces = self._decoder.feed(raw) if self._decoder else [raw]
        for piece in pieces:
            if self._sha256 is not None:
                self._sha256.update(piece)
            if self._checksum is not None:
                self._checksum.update(piece)
        return pieces

    async def _blocks(self) -> AsyncIterator[bytes]:
        # with nothing to decode or hash, the chunks go on as received: the object layer cuts
        # its own blocks, so joining them here too would copy every byte once more
        plain = self._decoder is None and self._sha256 is None and self._checksum is None
        async for chunks in self._raw_blocks():
            if plain:
                outs = chunks
            else:
                raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                if len(raw) >= OFFLOAD_THRESHOLD:
                    pieces = await offload(self._process, raw)
                else:
                    pieces = self._process(raw)
                outs = [pieces[0] if len(pieces) == 1 else b"".join(pieces)]
            for out in outs:
                self.received += len(out)
                if self.declared is not None and self.received > self.declared:
                    raise S3Error("IncompleteBody",
                                  "The body is longer than its declared length.")
                if self.received > self._limit:
                    raise S3Error(self._too_large)
                if out:
                    yield out
        self._finish()

    def _finish(self) -> None:
        trailers = self._decoder.finish() if self._decoder else {}
        if self.declared is not None and self.received != self.declared:
            raise S3Error("IncompleteBody")
        if self._sha256 is not None and not hmac.compare_digest(self._sha256.hexdigest(),
                                   (self._sha256_expected or "").lower()):
            raise S3Error("XAmzContentSHA256Mismatch")
        if self._checksum is not None and self._checksum_request is not None:
            self._verify_checksum(trailers)
        self.done = True

    def _verify_checksum(self, trailers: dict[str, str]) -> None:
        request = self._checksum_request
        assert request is not None and self._checksum is not None
        expected = request.expected
        if request.trailer is not None:
            expected = trailers.get(request.trailer)
            if expected is None:
                raise S3Error("MalformedTrailerError",
                              f"The trailer {request.trailer} announced in x-amz-trailer is "
                              "missing.")
        computed = self._checksum.b64()
        if expected is not None and expected.strip() != computed:
            raise S3Error("BadDigest", f"The {request.algorithm} you specified did not match "
                                       "the calculated checksum.")
        self.checksums[request.algorithm] = computed

    async def read_all(self, limit: int) -> bytes:
        """The whole (small) body, verified; MaxMessageLengthExceeded past `limit` bytes."""
        parts = []
        size = 0
        async for block in self:
            parts.append(block)
            size += len(block)
            if size > limit:
                raise S3Error("MaxMessageLengthExceeded")
        return b"".join(parts)


def _declared_lengths(ctx: Context, streaming: bool) -> int | None:
    req = ctx.req
    length = req.content_length()
    if streaming:
        decoded = req.h.get("x-amz-decoded-content-length")
        if decoded is None:
            raise S3Error("MissingContentLength", "x-amz-decoded-content-length is required "
                                                  "with aws-chunked bodies.")
        if not decoded.strip().isdigit():
            raise S3Error("InvalidArgument", "x-amz-decoded-content-length is not a number.")
        return int(decoded)
    return length


def open_body(ctx: Context, *, limit: int, too_large: str = "EntityTooLarge",
              require_length: bool = True, body_checksums: bool = True) -> RequestBody:
    """Set up the body pipeline for this request; sizes are checked here, before any byte is
    read, so an over-limit PUT is refused without reading it."""
    req = ctx.req
    payload = req.auth.payload_hash if req.auth else UNSIGNED
    if payload.startswith("STREAMING-AWS4-ECDSA"):
        raise S3Error("NotImplemented", "SigV4A streaming payloads are not supported.")
    signed_chunks = payload in (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER)
    streaming = signed_chunks or payload == STREAMING_UNSIGNED_TRAILER or (
        payload == UNSIGNED and "aws-chunked" in req.h.get("content-encoding", "")
        and "x-amz-decoded-content-length" in req.h)
    if not streaming and payload != UNSIGNED and not _HEX64.match(payload):
        raise S3Error("InvalidArgument", "x-amz-content-sha256 must be UNSIGNED-PAYLOAD, "
                                         "STREAMING-... or a SHA-256 in hex.")
    declared = _declared_lengths(ctx, streaming)
    if declared is None and require_length and "transfer-encoding" not in req.h:
        raise S3Error("MissingContentLength")
    if declared is not None and declared > limit:
        raise S3Error(too_large, f"The body of {declared} bytes exceeds the maximum of "
                                 f"{limit} bytes for this request.")
    trailer = payload in (STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER) or (
        streaming and "x-amz-trailer" in req.h)
    decoder = None
    if streaming:
        decoder = ChunkedDecoder(req.auth if signed_chunks else None, trailer=trailer)
    # x-amz-checksum-* describe the body, except on CompleteMultipartUpload (the object's)
    checksum = parse_checksum_request(req.h) if body_checksums else None
    if checksum and checksum.trailer and not streaming:
        raise S3Error("InvalidRequest", "x-amz-trailer needs an aws-chunked body.")
    sha256 = payload if _HEX64.match(payload) else None
    return RequestBody(ctx, decoder=decoder, sha256=sha256, checksum=checksum,
                       declared=declared, limit=limit, too_large=too_large)


async def read_small_body(ctx: Context, limit: int, *, require_md5: bool = False,
                          body_checksums: bool = True) -> bytes:
    """Read and verify a small request body (XML), checking Content-MD5 here since no object
    layer sees it. `require_md5`: S3 demands Content-MD5 or an x-amz-checksum-* value."""
    body = open_body(ctx, limit=limit, too_large="MaxMessageLengthExceeded",
                     require_length=False, body_checksums=body_checksums)
    md5_header = ctx.req.h.get("content-md5")
    expected_md5 = parse_content_md5(md5_header) if md5_header is not None else None
    if require_md5 and expected_md5 is None and body._checksum_request is None:
        raise S3Error("InvalidRequest", "Missing required header for this request: "
                                        "Content-MD5.")
    data = await body.read_all(limit)
    if expected_md5 is not None and hashlib.md5(data).digest() != expected_md5:
        raise S3Error("BadDigest")
    return data


__all__ += ["STREAMING_SIGNED", "STREAMING_SIGNED_TRAILER", "STREAMING_UNSIGNED_TRAILER",
            "UNSIGNED", "parse_checksum_request"]
