"""The `aws-chunked` body decoder: signed and unsigned chunks, with or without trailing headers.

Sans-IO: `feed(bytes)` returns the payload pieces found so far (never the framing) and
`finish()` checks the body ended properly and returns the trailing headers. With a
`SigningContext`, every chunk signature and the trailer signature are verified along the
chain that starts at the request's own signature. Framing never reaches stored data.

    <hex-size>[;chunk-signature=<sig>]\\r\\n<data>\\r\\n ... 0[;chunk-signature=<sig>]\\r\\n
    [<name>:<value>\\r\\n ... [x-amz-trailer-signature:<sig>\\r\\n]]\\r\\n
"""

from __future__ import annotations

import hashlib
import hmac

from .errors import S3Error
from .sigv4 import EMPTY_SHA256, SigningContext, chunk_signature, trailer_signature

__all__ = ["MAX_LINE", "ChunkedDecoder"]

MAX_LINE = 4096  # a chunk header or trailer line longer than this is not a real client's
MAX_TRAILER_LINES = 16
TRAILER_SIGNATURE = "x-amz-trailer-signature"

_HEADER, _DATA, _DATA_END, _TRAILER, _DONE = range(5)


def _malformed(detail: str) -> S3Error:
    return S3Error("InvalidRequest", f"Malformed aws-chunked body: {detail}.")


class ChunkedDecoder:
    """Decode one aws-chunked body. `signing` None means unsigned chunks."""

    def __init__(self, signing: SigningContext | None, *, trailer: bool):
        self.signing = signing
        self.expect_trailer = trailer
        self.trailers: dict[str, str] = {}
        self.decoded = 0  # payload bytes produced so far
        self._state = _HEADER
        self._line = bytearray()
        self._remaining = 0
        self._chunk_sig = ""
        self._chunk_hash = hashlib.sha256() if signing else None
        self._previous = signing.seed_signature if signing else ""
        self._trailer_raw: list[bytes] = []
        self._trailer_signed = False

    # ---- feeding ----

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        view = memoryview(data)
        pos = 0
        while pos < len(view):
            if self._state == _DATA:
                take = min(self._remaining, len(view) - pos)
                piece = view[pos:pos + take]
                if self._chunk_hash is not None:
                    self._chunk_hash.update(piece)
                out.append(bytes(piece))
                self._remaining -= take
                self.decoded += take
                pos += take
                if self._remaining == 0:
                    self._verify_chunk()
                    self._state = _DATA_END
                continue
            if self._state == _DONE:
                if bytes(view[pos:]).strip(b"\r\n"):
                    raise _malformed("data after the end of the body")
                return out
            pos = self._take_line(view, pos)
        return out

    def _take_line(self, view: memoryview, pos: int) -> int:
        end = bytes(view[pos:pos + MAX_LINE + 2]).find(b"\n")
        if end < 0:
            self._line += view[pos:]
            if len(self._line) > MAX_LINE:
                raise _malformed("line too long")
            return len(view)
        self._line += view[pos:pos + end]
        if len(self._line) > MAX_LINE:
            raise _malformed("line too long")
        line = bytes(self._line).rstrip(b"\r")
        self._line.clear()
        self._on_line(line)
        return pos + end + 1

    def _on_line(self, line: bytes) -> None:
        if self._state == _HEADER:
            self._on_chunk_header(line)
        elif self._state == _DATA_END:
            if line:
                raise _malformed("chunk data longer than its declared size")
            self._state = _HEADER
        elif self._state == _TRAILER:
            self._on_trailer_line(line)

    def _on_chunk_header(self, line: bytes) -> None:
        size_text, _, extension = line.partition(b";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise _malformed("chunk size is not hexadecimal") from None
        if size < 0 or len(size_text.strip()) > 16:
            raise _malformed("chunk size out of range")
        signature = ""
        if extension:
            name, _, value = extension.decode("latin-1").partition("=")
            if name.strip() == "chunk-signature":
                signature = value.strip()
        if self.signing and not signature:
            raise S3Error("SignatureDoesNotMatch", "A chunk signature is missing.")
        self._chunk_sig = signature
        if size == 0:
            self._verify_chunk()
            # what follows is the trailer (possibly empty) and the closing empty line
            self._state = _TRAILER
            return
        self._remaining = size
        self._state = _DATA

    def _verify_chunk(self) -> None:
        if self.signing is None:
            return
        digest = self._chunk_hash.hexdigest() if self._chunk_hash else EMPTY_SHA256
        expected = chunk_signature(self.signing, self._previous, digest)
        if not hmac.compare_digest(expected.encode(), self._chunk_sig.lower().encode()):
            raise S3Error("SignatureDoesNotMatch", "The chunk signature does not match.")
        self._previous = expected
        self._chunk_hash = hashlib.sha256()

    def _on_trailer_line(self, line: bytes) -> None:
        if not line:
            self._end_trailer()
            return
        if not self.expect_trailer:
            raise _malformed("unexpected data after the last chunk")
        if len(self._trailer_raw) >= MAX_TRAILER_LINES:
            raise _malformed("too many trailing headers")
        name, sep, value = line.decode("latin-1").partition(":")
        if not sep or not name.strip():
            raise S3Error("MalformedTrailerError")
        name = name.strip().lower()
        if name == TRAILER_SIGNATURE:
            self._verify_trailer(value.strip())
            return
        self.trailers[name] = value.strip()
        self._trailer_raw.append(f"{name}:{value.strip()}\n".encode("latin-1"))

    def _verify_trailer(self, given: str) -> None:
        if self.signing is None:
            return
        expected = trailer_signature(self.signing, self._previous, b"".join(self._trailer_raw))
        if not hmac.compare_digest(expected.encode(), given.lower().encode()):
            raise S3Error("SignatureDoesNotMatch", "The trailer signature does not match.")
        self._trailer_signed = True

    def _end_trailer(self) -> None:
        if self.signing and self.expect_trailer and not self._trailer_signed:
            raise S3Error("SignatureDoesNotMatch", "The trailer signature is missing.")
        self._state = _DONE

    # ---- the end ----

    def finish(self) -> dict[str, str]:
        """The body ended: check it ended at a boundary; return the trailing headers."""
        if self._state == _TRAILER and self._line:
            line = bytes(self._line).rstrip(b"\r")
            if b":" not in line:
                raise S3Error("IncompleteBody", "The aws-chunked body ended inside its trailer.")
            self._on_trailer_line(line)
            self._line.clear()
        # a missing final empty line after the trailer is common (minio#17662): accept it
        if self._state == _TRAILER:
            self._end_trailer()
        if self._state != _DONE:
            raise S3Error("IncompleteBody", "The aws-chunked body ended before its last chunk.")
        return self.trailers

