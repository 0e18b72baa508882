"""multipart/form-data bodies, streamed: the boundary scanner (`FormScanner`) and the reader
that gives PostObject its small fields and then the `file` part as a stream (`FormReader`).

Hand-written rather than python-multipart: PostObject needs only "fields, then one file, then
stop", the scanner finds each delimiter with `bytes.find` (C speed over the file's bytes), and
it is a plain `feed(bytes) -> events` function whose chunk-split edge cases unit tests can
walk byte by byte. A callback parser would still need this buffering around it to hand the
file's bytes to the object layer as an async stream.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

from .body import receive_chunk
from .errors import S3Error
from .request import Context

__all__ = ["FilePart", "FormEnd", "FormReader", "FormScanner", "PartData", "PartEnd",
           "PartStart", "form_boundary"]

MAX_PART_HEADERS = 8 * 1024  # bytes of one part's header block
_MALFORMED = "MalformedPOSTRequest"
_BOUNDARY_RE = re.compile(r'boundary=(?:"([^"]{1,70})"|([^;\s]{1,70}))', re.IGNORECASE)
_PARAM_RE = re.compile(r';\s*([^=;\s]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)')


def form_boundary(content_type: str) -> bytes:
    """The boundary of a multipart/form-data Content-Type; MalformedPOSTRequest otherwise."""
    if not content_type.lower().lstrip().startswith("multipart/form-data"):
        raise S3Error("PreconditionFailed", "Bucket POST must be of the enclosure-type "
                                            "multipart/form-data.")
    match = _BOUNDARY_RE.search(content_type)
    if not match:
        raise S3Error(_MALFORMED, "The multipart/form-data Content-Type has no boundary.")
    return (match[1] or match[2]).encode("latin-1")


@dataclass(frozen=True)
class PartStart:
    """A part begins: its headers (lower-case names)."""

    headers: dict[str, str]


@dataclass(frozen=True)
class PartData:
    data: bytes


@dataclass(frozen=True)
class PartEnd:
    pass


@dataclass(frozen=True)
class FormEnd:
    """The closing delimiter was seen; anything after it is ignored."""


Event = PartStart | PartData | PartEnd | FormEnd
_PREAMBLE, _AFTER_DELIMITER, _HEADERS, _BODY, _DONE = range(5)


class FormScanner:
    """Splits a multipart body fed in arbitrary chunks into events. Holds at most one part
    header block or a delimiter's length of body bytes between calls."""

    def __init__(self, boundary: bytes):
        self._delimiter = b"\r\n--" + boundary
        self._buf = b"\r\n"  # so the first delimiter looks like every other one
        self._state = _PREAMBLE

    @property
    def done(self) -> bool:
        return self._state == _DONE

    def feed(self, data: bytes) -> list[Event]:
        buf = self._buf + data if self._buf else data
        events: list[Event] = []
        pos = 0
        while pos < len(buf) or self._state == _BODY:
            if self._state in (_PREAMBLE, _BODY):
                pos, found = self._scan_body(buf, pos, events)
                if not found:
                    break
            elif self._state == _AFTER_DELIMITER:
                pos, ok = self._after_delimiter(buf, pos, events)
                if not ok:
                    break
            elif self._state == _HEADERS:
                pos, ok = self._headers(buf, pos, events)
                if not ok:
                    break
            else:  # _DONE: the epilogue is ignored
                pos = len(buf)
        self._buf = buf[pos:]
        return events

    def _scan_body(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        at = buf.find(self._delimiter, pos)
        in_body = self._state == _BODY
        if at < 0:
            # keep what could be the start of a delimiter split across chunks
            cut = max(pos, len(buf) - len(self._delimiter) + 1)
            if in_body and cut > pos:
                events.append(PartData(buf[pos:cut]))
            return cut, False
        if in_body:
            if at > pos:
                events.append(PartData(buf[pos:at]))
            events.append(PartEnd())
        self._state = _AFTER_DELIMITER
        return at + len(self._delimiter), True

    def _after_delimiter(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        if len(buf) - pos < 2:
            return pos, False
        if buf[pos:pos + 2] == b"--":
            events.append(FormEnd())
            self._state = _DONE
            return len(buf), True
        end = buf.find(b"\r\n", pos)
        if end < 0:
            if len(buf) - pos > 256:
                raise S3Error(_MALFORMED, "A multipart delimiter is not followed by CRLF.")
            return pos, False
        if buf[pos:end].strip(b" \t"):  # only transport padding may follow a delimiter
            raise S3Error(_MALFORMED, "A multipart delimiter is followed by data.")
        self._state = _HEADERS
        return end + 2, True

    def _headers(self, buf: bytes, pos: int, events: list[Event]) -> tuple[int, bool]:
        if len(buf) - pos < 2:
            return pos, False
        if buf[pos:pos + 2] == b"\r\n":  # a part without headers
            events.append(PartStart({}))
            self._state = _BODY
            return pos + 2, True
        end = buf.find(b"\r\n\r\n", pos)
        if end < 0:
            if len(buf) - pos > MAX_PART_HEADERS:
                raise S3Error(_MALFORMED, "A form part's headers are too long.")
            return pos, False
        if end - pos > MAX_PART_HEADERS:
            raise S3Error(_MALFORMED, "A form part's headers are too long.")
        events.append(PartStart(_parse_headers(buf[pos:end])))
        self._state = _BODY
        return end + 4, True


def _parse_headers(block: bytes) -> dict[str, str]:
    headers: dict[str, str] = {}
    for line in block.decode("utf-8", "surrogateescape").split("\r\n"):
        name, sep, value = line.partition(":")
        if not sep or not name.strip():
            raise S3Error(_MALFORMED, "A form part has a malformed header line.")
        headers[name.strip().lower()] = value.strip()
    return headers


def disposition(headers: dict[str, str]) -> tuple[str | None, str | None]:
    """`name` and `filename` of a part's Content-Disposition: form-data header."""
    value = headers.get("content-disposition", "")
    if not value.lower().startswith("form-data"):
        raise S3Error(_MALFORMED, "A form part has no Content-Disposition: form-data header.")
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(value):
        raw = match[2].strip()
        if raw.startswith('"'):
            # browsers percent-encode '"' and send Windows paths' backslashes as they are
            raw = raw[1:-1]
        params.setdefault(match[1].lower(), raw)
    return params.get("name"), params.get("filename")


@dataclass(frozen=True)
class FilePart:
    """The `file` part: its filename and Content-Type as the browser sent them."""

    filename: str
    content_type: str | None


class FormReader:
    """Reads a form from the request: fields up to `fields_limit` bytes, then the file part
    as a stream (`file_data`); fields after the file are ignored, as S3 ignores them."""

    def __init__(self, ctx: Context, boundary: bytes, *, fields_limit: int):
        self._ctx = ctx
        self._scanner = FormScanner(boundary)
        self._limit = fields_limit
        self._events: list[Event] = []
        self._ended = False  # the request body has no more bytes

    async def _next_event(self) -> Event | None:
        while not self._events:
            if self._ended:
                return None
            self._events = list(reversed(self._scanner.feed(await self._receive())))
        return self._events.pop()

    async def _receive(self) -> bytes:
        chunk, more = await receive_chunk(self._ctx)
        self._ended = not more
        return chunk

    async def read_fields(self) -> tuple[dict[str, str], FilePart]:
        """Every field before the file (lower-case names), and the file part."""
        fields: dict[str, str] = {}
        size = 0
        while True:
            event = await self._next_event()
            if event is None or isinstance(event, FormEnd):
                raise S3Error("IncorrectNumberOfFilesInPostRequest")
            if not isinstance(event, PartStart):
                continue  # preamble-free scanner: only PartStart begins a part
            name, filename = disposition(event.headers)
            if name is None:
                raise S3Error(_MALFORMED, "A form part has no name.")
            if name.lower() == "file":
                return fields, FilePart(filename or "", event.headers.get("content-type"))
            size, value = await self._field_value(name, size)
            if name.lower() in fields:
                raise S3Error("InvalidArgument", f"The form field {name} appears more than "
                                                 "once.", ArgumentName=name)
            fields[name.lower()] = value

    async def _field_value(self, name: str, size: int) -> tuple[int, str]:
        pieces: list[bytes] = []
        size += len(name)
        while True:
            event = await self._next_event()
            if isinstance(event, PartData):
                size += len(event.data)
                if size > self._limit:
                    raise S3Error("MaxPostPreDataLengthExceeded")
                pieces.append(event.data)
            elif isinstance(event, PartEnd):
                break
            else:
                raise S3Error(_MALFORMED, f"The form field {name} is not terminated.")
        try:
            return size, b"".join(pieces).decode("utf-8")
        except UnicodeDecodeError:
            raise S3Error(_MALFORMED, f"The form field {name} is not UTF-8.") from None

    async def file_data(self) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive; MalformedPOSTRequest (and so nothing stored) when
        the body ends before the file's closing delimiter."""
        while True:
            event = await self._next_event()
            if isinstance(event, PartData):
                yield event.data
            elif isinstance(event, PartEnd):
                return
            else:
                raise S3Error(_MALFORMED, "The body ended inside the file part.")

    async def drain(self, limit: int = 64 * 1024) -> None:
        """Read (and ignore) what follows the file, up to `limit` bytes; past that the
        connection is closed after the response instead (Context.unread_body)."""
        read = 0
        while not self._ended and read <= limit:
            read += len(await self._receive())
