"""The aws-chunked decoder: every mode, split at every kind of boundary, AWS's published
example, and malformed framing (each must raise an S3 error, never hang or store framing)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
import random
import zlib

import pytest

from gateway.s3.chunked import ChunkedDecoder
from gateway.s3.errors import S3Error
from gateway.s3.sigv4 import SigningContext, signing_key
from tests.unit.test_s3_sigv4 import aws_example_context

SECRET = "secret-for-chunk-tests"
AMZ_DATE = "20260304T050607Z"
SCOPE = "20260304/us-east-1/s3/aws4_request"
SEED = "a" * 64
EMPTY = hashlib.sha256(b"").hexdigest()


def _ctx() -> SigningContext:
    key = signing_key(SECRET, "20260304", "us-east-1")
    return SigningContext("AK", key, AMZ_DATE, SCOPE, SEED, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")


def _hmac(text: str) -> str:
    # derived here from the secret, as the AWS specification describes (not via the gateway)
    key = ("AWS4" + SECRET).encode()
    for part in ("20260304", "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def encode(data: bytes, *, signed: bool, chunk: int = 1000,
           trailer: dict[str, str] | None = None, final_crlf: bool = True) -> bytes:
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    previous = SEED
    out = []
    for piece in pieces:
        if signed:
            previous = _hmac("\n".join(["AWS4-HMAC-SHA256-PAYLOAD", AMZ_DATE, SCOPE, previous,
                                        EMPTY, hashlib.sha256(piece).hexdigest()]))
            out.append(f"{len(piece):x};chunk-signature={previous}\r\n".encode())
        else:
            out.append(f"{len(piece):x}\r\n".encode())
        if piece:
            out.append(piece + b"\r\n")
    if trailer:
        lines = "".join(f"{k}:{v}\n" for k, v in trailer.items())
        out += [f"{k}:{v}\r\n".encode() for k, v in trailer.items()]
        if signed:
            sig = _hmac("\n".join(["AWS4-HMAC-SHA256-TRAILER", AMZ_DATE, SCOPE, previous,
                                   hashlib.sha256(lines.encode()).hexdigest()]))
            out.append(f"x-amz-trailer-signature:{sig}\r\n".encode())
    if final_crlf:
        out.append(b"\r\n")
    return b"".join(out)


def decode(body: bytes, *, signed: bool, trailer: bool, splits: list[int] | None = None):
    decoder = ChunkedDecoder(_ctx() if signed else None, trailer=trailer)
    out = []
    cuts = [0, *(splits or []), len(body)]
    for start, end in itertools.pairwise(cuts):
        out += decoder.feed(body[start:end])
    return b"".join(out), decoder.finish()


DATA = bytes(random.Random(7).randrange(256) for _ in range(5000))
CRC = base64.b64encode(zlib.crc32(DATA).to_bytes(4, "big")).decode()


@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("with_trailer", [False, True])
def test_round_trip_every_split(signed, with_trailer):
    trailer = {"x-amz-checksum-crc32": CRC} if with_trailer else None
    body = encode(DATA, signed=signed, trailer=trailer)
    rng = random.Random(len(body))
    for _ in range(30):
        splits = sorted(rng.sample(range(1, len(body)), rng.randrange(1, 40)))
        data, trailers = decode(body, signed=signed, trailer=with_trailer, splits=splits)
        assert data == DATA
        assert trailers == (trailer or {})


def test_one_byte_at_a_time():
    body = encode(DATA[:300], signed=True, chunk=64, trailer={"x-amz-checksum-crc32": "AAAAAA=="})
    data, trailers = decode(body, signed=True, trailer=True, splits=list(range(1, len(body))))
    assert data == DATA[:300]
    assert trailers == {"x-amz-checksum-crc32": "AAAAAA=="}


def test_empty_payload():
    assert decode(encode(b"", signed=True), signed=True, trailer=False) == (b"", {})
    assert decode(encode(b"", signed=False, trailer={"x-amz-checksum-crc32": "AAAAAA=="}),
                  signed=False, trailer=True)[1] == {"x-amz-checksum-crc32": "AAAAAA=="}


def test_missing_final_newline_is_accepted():
    body = encode(DATA, signed=False, trailer={"x-amz-checksum-crc32": CRC}, final_crlf=False)
    assert decode(body, signed=False, trailer=True)[0] == DATA
    body = encode(DATA, signed=True, final_crlf=False)
    assert decode(body, signed=True, trailer=False)[0] == DATA


def test_aws_published_example():
    ctx = aws_example_context()
    sigs = ["ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648",
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497",
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"]
    body = (f"10000;chunk-signature={sigs[0]}\r\n".encode() + b"a" * 65536 + b"\r\n"
            + f"400;chunk-signature={sigs[1]}\r\n".encode() + b"a" * 1024 + b"\r\n"
            + f"0;chunk-signature={sigs[2]}\r\n\r\n".encode())
    assert len(body) == 66824  # the example's Content-Length
    decoder = ChunkedDecoder(ctx, trailer=False)
    assert b"".join(decoder.feed(body)) == b"a" * 66560
    decoder.finish()


def _fails(body: bytes, *, signed: bool = False, trailer: bool = False) -> S3Error:
    with pytest.raises(S3Error) as exc:
        decode(body, signed=signed, trailer=trailer)
    return exc.value


def test_truncation_anywhere_is_incomplete_body():
    body = encode(DATA[:2500], signed=True, trailer={"x-amz-checksum-crc32": CRC})
    for cut in range(0, len(body) - 2, 37):
        error = _fails(body[:cut], signed=True, trailer=True)
        assert error.code in ("IncompleteBody", "SignatureDoesNotMatch"), cut


@pytest.mark.parametrize("body", [
    b"zz\r\nabc\r\n0\r\n\r\n",  # size not hex
    b"3\r\nabcdef\r\n0\r\n\r\n",  # data longer than declared
    b"3\r\nabc0\r\n\r\n",  # missing CRLF after data
    b"-3\r\nabc\r\n0\r\n\r\n",  # negative size
    b"1" * 5000 + b"\r\n",  # line too long
    b"3\r\nabc\r\n0\r\n\r\nextra",  # data after the end
    b"3\r\nabc\r\n0\r\ngarbage-line\r\n\r\n",  # trailer where none was announced
])
def test_malformed_framing(body):
    error = _fails(body)
    assert error.status == 400


def test_bad_chunk_signature():
    body = bytearray(encode(DATA, signed=True))
    index = body.index(b"chunk-signature=") + len(b"chunk-signature=")
    body[index] = ord("0") if body[index] != ord("0") else ord("1")
    assert _fails(bytes(body), signed=True).code == "SignatureDoesNotMatch"


def test_changed_data_breaks_signature():
    body = bytearray(encode(DATA, signed=True))
    body[200] ^= 0xFF
    assert _fails(bytes(body), signed=True).code == "SignatureDoesNotMatch"


def test_missing_chunk_signature_in_signed_mode():
    assert _fails(encode(DATA, signed=False), signed=True).code == "SignatureDoesNotMatch"


def test_signed_trailer_checks():
    trailer = {"x-amz-checksum-crc32": CRC}
    body = encode(DATA, signed=True, trailer=trailer)
    tampered = body.replace(CRC.encode(), b"AAAAAA==")
    assert _fails(tampered, signed=True, trailer=True).code == "SignatureDoesNotMatch"
    unsigned = encode(DATA, signed=True, trailer=None)
    without_sig = unsigned[:-2] + f"x-amz-checksum-crc32:{CRC}\r\n\r\n".encode()
    assert _fails(without_sig, signed=True, trailer=True).code == "SignatureDoesNotMatch"


def test_malformed_trailer_line():
    body = encode(DATA, signed=False)[:-2] + b"no colon here\r\n\r\n"
    assert _fails(body, trailer=True).code == "MalformedTrailerError"
