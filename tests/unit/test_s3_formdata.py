"""The multipart/form-data scanner and reader: events the same whatever the chunk splits, a
boundary-like run inside the file, bounded headers and fields, a body that ends early."""

from __future__ import annotations

import asyncio
import os

import pytest

from gateway.s3.errors import S3Error
from gateway.s3.formdata import (
    FormEnd,
    FormReader,
    FormScanner,
    PartData,
    PartEnd,
    PartStart,
    form_boundary,
)

BOUNDARY = b"----tesseraBoundary7MA4YWxk"


def form(fields: list[tuple[str, str]], data: bytes, *, after: bytes = b"",
         filename: str = "a.bin", boundary: bytes = BOUNDARY) -> bytes:
    out = [b"preamble to ignore\r\n"]
    for name, value in fields:
        out.append(b"--" + boundary + b"\r\n")
        out.append(f'Content-Disposition: form-data; name="{name}"\r\n\r\n'.encode())
        out.append(value.encode() + b"\r\n")
    out.append(b"--" + boundary + b"\r\n")
    out.append(f'Content-Disposition: form-data; name="file"; filename="{filename}"\r\n'
               "Content-Type: application/octet-stream\r\n\r\n".encode())
    out.append(data + b"\r\n")
    out.append(after)
    out.append(b"--" + boundary + b"--\r\nepilogue")
    return b"".join(out)


def scan(body: bytes, splits: list[int]) -> list[object]:
    """Events for `body` fed in pieces cut at `splits`, data events merged per part."""
    scanner = FormScanner(BOUNDARY)
    events: list[object] = []
    last = 0
    for cut in [*splits, len(body)]:
        events += scanner.feed(body[last:cut])
        last = cut
    merged: list[object] = []
    for event in events:
        if isinstance(event, PartData) and merged and isinstance(merged[-1], PartData):
            merged[-1] = PartData(merged[-1].data + event.data)
        else:
            merged.append(event)
    return merged


# the file holds runs that look like the start of a delimiter without being one
TRICKY = b"\r\n--" + BOUNDARY[:-1] + b"X\r\n-\r\n--" + BOUNDARY[:10] + os.urandom(50) + b"\r"


def test_every_split_point_gives_the_same_events() -> None:
    body = form([("key", "k/${filename}"), ("policy", "abc")], TRICKY)
    expected = scan(body, [])
    assert [type(e) for e in expected] == [PartStart, PartData, PartEnd, PartStart, PartData,
                                           PartEnd, PartStart, PartData, PartEnd, FormEnd]
    assert expected[7] == PartData(TRICKY)
    assert expected[1] == PartData(b"k/${filename}")
    for cut in range(1, len(body)):
        assert scan(body, [cut]) == expected, cut
    assert scan(body, list(range(1, len(body)))) == expected  # byte by byte


def test_empty_file_and_part_without_headers() -> None:
    body = (b"--" + BOUNDARY + b"\r\n\r\nno headers\r\n--" + BOUNDARY + b"\r\n"
            b'Content-Disposition: form-data; name="file"\r\n\r\n\r\n--' + BOUNDARY + b"--")
    events = scan(body, [])
    assert events[0] == PartStart({})
    assert events[1] == PartData(b"no headers")
    assert [type(e) for e in events[3:]] == [PartStart, PartEnd, FormEnd]


def test_garbage_after_delimiter_and_long_headers_are_malformed() -> None:
    with pytest.raises(S3Error) as err:
        FormScanner(BOUNDARY).feed(b"--" + BOUNDARY + b"junk\r\n")
    assert err.value.code == "MalformedPOSTRequest"
    with pytest.raises(S3Error) as err:
        FormScanner(BOUNDARY).feed(b"--" + BOUNDARY + b"\r\nX: " + b"a" * 9000)
    assert err.value.code == "MalformedPOSTRequest"


def test_boundary_from_content_type() -> None:
    assert form_boundary("multipart/form-data; boundary=abc") == b"abc"
    assert form_boundary('Multipart/Form-Data; charset=x; boundary="a b"') == b"a b"
    with pytest.raises(S3Error) as err:
        form_boundary("application/x-www-form-urlencoded")
    assert err.value.code == "PreconditionFailed"
    with pytest.raises(S3Error) as err:
        form_boundary("multipart/form-data")
    assert err.value.code == "MalformedPOSTRequest"


class _Ctx:
    """What FormReader uses of a Context: receive and the body flags."""

    def __init__(self, body: bytes, chunk: int, *, cut_at: int | None = None):
        pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)]
        if cut_at is not None:
            pieces = pieces[:cut_at]
        self.messages = [{"type": "http.request", "body": p,
                          "more_body": cut_at is not None or i < len(pieces) - 1}
                         for i, p in enumerate(pieces)]
        self.body_started = self.body_complete = False

    async def receive(self) -> dict:
        return self.messages.pop(0) if self.messages else {"type": "http.disconnect"}


async def _read(ctx: _Ctx, limit: int = 20 * 1024) -> tuple[dict, str, bytes]:
    reader = FormReader(ctx, BOUNDARY, fields_limit=limit)  # type: ignore[arg-type]
    fields, upload = await reader.read_fields()
    data = b"".join([chunk async for chunk in reader.file_data()])
    await reader.drain()
    return fields, upload.filename, data


def test_reader_fields_then_file_and_later_fields_ignored() -> None:
    data = os.urandom(300_000)
    body = form([("Key", "x"), ("Content-Type", "text/plain")], data,
                after=b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="late"'
                b"\r\n\r\nignored\r\n", filename="C:\\dir\\photo.jpg")
    ctx = _Ctx(body, 7001)
    fields, filename, got = asyncio.run(_read(ctx))
    assert fields == {"key": "x", "content-type": "text/plain"}
    assert filename == "C:\\dir\\photo.jpg"
    assert got == data
    assert ctx.body_complete


def test_reader_refuses_fields_over_the_limit() -> None:
    body = form([("key", "k"), ("x-amz-meta-big", "v" * 30_000)], b"data")
    with pytest.raises(S3Error) as err:
        asyncio.run(_read(_Ctx(body, 4096)))
    assert err.value.code == "MaxPostPreDataLengthExceeded"


def test_reader_without_file_part() -> None:
    body = b"--" + BOUNDARY + b'\r\nContent-Disposition: form-data; name="key"\r\n\r\nk\r\n--' \
        + BOUNDARY + b"--\r\n"
    with pytest.raises(S3Error) as err:
        asyncio.run(_read(_Ctx(body, 100)))
    assert err.value.code == "IncorrectNumberOfFilesInPostRequest"


def test_reader_body_ending_inside_the_file_fails() -> None:
    body = form([("key", "k")], os.urandom(10_000))
    truncated = body[:-len(b"\r\n--" + BOUNDARY + b"--\r\nepilogue") - 10]
    with pytest.raises(S3Error) as err:
        asyncio.run(_read(_Ctx(truncated, 1000)))
    assert err.value.code == "MalformedPOSTRequest"
    with pytest.raises(S3Error) as err:  # the client goes away mid-file
        asyncio.run(_read(_Ctx(body, 1000, cut_at=5)))
    assert err.value.code == "IncompleteBody"
