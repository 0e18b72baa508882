"""Body digests S3 clients send: Content-MD5 and `x-amz-checksum-*` (CRC32, CRC32C, CRC64NVME,
SHA1, SHA256), how they are named in headers and trailers, and multipart composites.

CRCs come from the AWS CRT's C code (`awscrt.checksums`); SHA from hashlib. Both are fed in
large blocks from a worker thread (see `gateway/s3/body.py`), so hashing never stalls the loop.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping

from awscrt import checksums as crt

from .errors import S3Error

__all__ = [
    "ALGORITHMS",
    "Checksum",
    "ChecksumRequest",
    "composite_checksum",
    "full_object_crc",
    "header_name",
    "new_checksum",
    "parse_checksum_request",
    "parse_content_md5",
]

# algorithm -> digest size in bytes
ALGORITHMS: dict[str, int] = {"CRC32": 4, "CRC32C": 4, "CRC64NVME": 8, "SHA1": 20, "SHA256": 32}
_HEADER_PREFIX = "x-amz-checksum-"


def header_name(algorithm: str) -> str:
    """`CRC32` -> `x-amz-checksum-crc32`."""
    return _HEADER_PREFIX + algorithm.lower()


def algorithm_of_header(name: str) -> str | None:
    """`x-amz-checksum-crc32c` -> `CRC32C`; None for names that are not a checksum value."""
    if not name.startswith(_HEADER_PREFIX):
        return None
    suffix = name[len(_HEADER_PREFIX):].upper()
    if suffix in ("ALGORITHM", "MODE", "TYPE"):
        return None
    return suffix


class Checksum:
    """A running digest of one algorithm."""

    def __init__(self, algorithm: str):
        self.algorithm = algorithm
        self._crc = 0
        self._crc_fn = {"CRC32": crt.crc32, "CRC32C": crt.crc32c,
                        "CRC64NVME": crt.crc64nvme}.get(algorithm)
        self._hash = None if self._crc_fn else hashlib.new(algorithm.lower())

    def update(self, data: bytes | memoryview) -> None:
        if self._crc_fn is not None:
            self._crc = self._crc_fn(data, self._crc)
        else:
            self._hash.update(data)  # type: ignore[union-attr]

    def digest(self) -> bytes:
        if self._crc_fn is not None:
            return self._crc.to_bytes(ALGORITHMS[self.algorithm], "big")
        return self._hash.digest()  # type: ignore[union-attr]

    def b64(self) -> str:
        return base64.b64encode(self.digest()).decode()


def new_checksum(algorithm: str) -> Checksum:
    if algorithm not in ALGORITHMS:
        raise S3Error("InvalidRequest", f"Checksum algorithm {algorithm!r} is not supported.")
    return Checksum(algorithm)


def parse_content_md5(value: str) -> bytes:
    """The 16 raw bytes of a Content-MD5 header; InvalidDigest when it cannot be one."""
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise S3Error("InvalidDigest") from None
    if len(raw) != 16:
        raise S3Error("InvalidDigest")
    return raw


def check_checksum_value(algorithm: str, value: str) -> None:
    try:
        raw = base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != ALGORITHMS[algorithm]:
        raise S3Error("InvalidRequest", f"Value for {header_name(algorithm)} header is invalid.")


class ChecksumRequest:
    """What the client asked us to verify: one algorithm, with its value either in a header
    (`expected`) or in the trailer (`trailer` names the trailing header)."""

    def __init__(self, algorithm: str, expected: str | None, trailer: str | None):
        self.algorithm = algorithm
        self.expected = expected
        self.trailer = trailer


def parse_checksum_request(headers: Mapping[str, str]) -> ChecksumRequest | None:
    """Find the x-amz-checksum-* the request carries (header or announced trailer)."""
    found: list[tuple[str, str]] = []
    for name, value in headers.items():
        algorithm = algorithm_of_header(name)
        if algorithm is None:
            continue
        if algorithm not in ALGORITHMS:
            raise S3Error("InvalidRequest", f"The algorithm type you specified in {name} header "
                                            "is invalid.")
        check_checksum_value(algorithm, value)
        found.append((algorithm, value.strip()))
    trailer_names = [t.strip().lower() for t in headers.get("x-amz-trailer", "").split(",")
                     if t.strip()]
    trailers = []
    for name in trailer_names:
        algorithm = algorithm_of_header(name)
        if algorithm is None or algorithm not in ALGORITHMS:
            raise S3Error("InvalidRequest", f"The trailer {name!r} is not supported.")
        trailers.append((algorithm, name))
    if len(found) + len(trailers) > 1:
        raise S3Error("InvalidRequest", "Expecting a single x-amz-checksum- header. Multiple "
                                        "checksum Types are not allowed.")
    declared = headers.get("x-amz-sdk-checksum-algorithm", "").upper()
    if declared and declared not in ALGORITHMS:
        raise S3Error("InvalidRequest", "Value for x-amz-sdk-checksum-algorithm header is "
                                        "invalid.")
    if found:
        return ChecksumRequest(found[0][0], found[0][1], None)
    if trailers:
        return ChecksumRequest(trailers[0][0], None, trailers[0][1])
    if declared:
        # the SDK named an algorithm without sending a value: compute and store it
        return ChecksumRequest(declared, None, None)
    return None


def full_object_crc(algorithm: str, parts: list[tuple[str, int]]) -> str:
    """The CRC of a whole multipart object from its parts' CRCs and sizes (no data read)."""
    combine = {"CRC32": crt.combine_crc32, "CRC32C": crt.combine_crc32c,
               "CRC64NVME": crt.combine_crc64nvme}[algorithm]
    width = ALGORITHMS[algorithm]
    crc = None
    for value, size in parts:
        part = int.from_bytes(base64.b64decode(value), "big")
        crc = part if crc is None else combine(crc, part, size)
    return base64.b64encode((crc or 0).to_bytes(width, "big")).decode()


def composite_checksum(algorithm: str, part_values: list[str]) -> str:
    """S3's checksum-of-checksums for a multipart object: `<b64 digest of the raw part
    digests>-<part count>`."""
    whole = Checksum(algorithm)
    for value in part_values:
        whole.update(base64.b64decode(value))
    return f"{whole.b64()}-{len(part_values)}"
