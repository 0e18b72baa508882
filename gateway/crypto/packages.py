"""The DARE-v2 package format: constants, headers, AEAD nonces and size formulas.

A stream is a run of packages. Each package is a 16-byte header, 1..65,536 bytes of
AES-256-GCM ciphertext and a 16-byte tag. Header: [0] version 0x20, [1] cipher 0x00,
[2:4] payload length - 1 (uint16 LE), [4:16] the stream's random nonce, whose top bit is set
on the final package. The AEAD nonce is that nonce with the package sequence number XORed
into its last 4 bytes (uint32 LE); the AAD is header[0:4]. Every non-final package carries
exactly 65,536 bytes, so sequence numbers (and reordering, truncation and splicing) follow
from byte offsets alone. See docs/design/encryption.md.
"""

from __future__ import annotations

import os
import struct

from gateway.objects.errors import ObjectTampered

__all__ = [
    "BLOCK_SIZE",
    "CIPHER_AES_256_GCM",
    "ENCRYPTED_PACKAGE_SIZE",
    "HEADER_SIZE",
    "MAX_PACKAGES",
    "NONCE_SIZE",
    "PACKAGES_PER_BLOCK",
    "PACKAGE_OVERHEAD",
    "PACKAGE_SIZE",
    "TAG_SIZE",
    "VERSION",
    "PackageHeader",
    "aead_nonce",
    "decrypted_size",
    "encrypted_size",
    "new_stream_nonce",
    "package_count",
]

VERSION = 0x20
CIPHER_AES_256_GCM = 0x00
HEADER_SIZE = 16
TAG_SIZE = 16
NONCE_SIZE = 12
PACKAGE_SIZE = 65_536  # plaintext bytes in every non-final package
PACKAGE_OVERHEAD = HEADER_SIZE + TAG_SIZE  # 32
ENCRYPTED_PACKAGE_SIZE = PACKAGE_SIZE + PACKAGE_OVERHEAD  # 65,568
PACKAGES_PER_BLOCK = 16
# One erasure block of ciphertext holds exactly 16 whole packages, so a range read fetches
# whole blocks and decrypts whole packages.
BLOCK_SIZE = PACKAGES_PER_BLOCK * ENCRYPTED_PACKAGE_SIZE  # 1,049,088
MAX_PACKAGES = 2**32  # the sequence number is a uint32: 256 TiB per key and stream

FINAL_FLAG = 0x80
_PREFIX = struct.Struct("<BBH")


def new_stream_nonce() -> bytes:
    """A random 12-byte stream nonce with the final-package bit clear."""
    nonce = bytearray(os.urandom(NONCE_SIZE))
    nonce[0] &= 0x7F
    return bytes(nonce)


def aead_nonce(header_nonce: bytes, sequence: int) -> bytes:
    """The AES-GCM nonce of package `sequence`: header nonce, last 4 bytes XOR sequence."""
    tail = int.from_bytes(header_nonce[8:12], "little") ^ sequence
    return bytes(header_nonce[:8]) + tail.to_bytes(4, "little")


class PackageHeader:
    """A parsed 16-byte package header (validated: version, cipher, length)."""

    __slots__ = ("aad", "final", "length", "nonce", "raw", "stream_nonce")

    def __init__(self, raw: bytes) -> None:
        if len(raw) != HEADER_SIZE:
            raise ObjectTampered("encrypted package header is truncated")
        version, cipher, length_minus_one = _PREFIX.unpack_from(raw)
        if version != VERSION:
            raise ObjectTampered(f"unknown encrypted package version 0x{version:02x}")
        if cipher != CIPHER_AES_256_GCM:
            raise ObjectTampered(f"unsupported package cipher 0x{cipher:02x}")
        self.raw = raw
        self.aad = raw[:4]
        self.length = length_minus_one + 1
        self.nonce = raw[4:16]  # includes the final flag: it is authenticated via the nonce
        self.final = bool(raw[4] & FINAL_FLAG)
        self.stream_nonce = bytes([raw[4] & 0x7F]) + raw[5:16]

    @staticmethod
    def build(length: int, stream_nonce: bytes, *, final: bool) -> bytes:
        """The header of a package carrying `length` plaintext bytes."""
        if not 1 <= length <= PACKAGE_SIZE:
            raise ValueError(f"package payload must be 1..{PACKAGE_SIZE} bytes, got {length}")
        first = stream_nonce[0] | FINAL_FLAG if final else stream_nonce[0] & 0x7F
        return (
            _PREFIX.pack(VERSION, CIPHER_AES_256_GCM, length - 1)
            + bytes([first])
            + bytes(stream_nonce[1:12])
        )


def package_count(plaintext_size: int) -> int:
    """How many packages a stream of `plaintext_size` bytes has (0 for an empty stream)."""
    if plaintext_size < 0:
        raise ValueError("size must not be negative")
    return -(-plaintext_size // PACKAGE_SIZE)


def encrypted_size(plaintext_size: int) -> int:
    """Ciphertext bytes for `plaintext_size` bytes of plaintext (DARE v2 formula)."""
    if plaintext_size < 0:
        raise ValueError("size must not be negative")
    full, rest = divmod(plaintext_size, PACKAGE_SIZE)
    size = full * ENCRYPTED_PACKAGE_SIZE + (rest + PACKAGE_OVERHEAD if rest else 0)
    if package_count(plaintext_size) > MAX_PACKAGES:
        raise ValueError("stream exceeds 2^32 packages")
    return size


def decrypted_size(ciphertext_size: int) -> int:
    """Plaintext bytes held by `ciphertext_size` bytes of ciphertext.

    Raises ObjectTampered when no stream has that size: a final package of 32 bytes or
    fewer would carry no payload.
    """
    if ciphertext_size < 0:
        raise ObjectTampered("negative encrypted size")
    full, rest = divmod(ciphertext_size, ENCRYPTED_PACKAGE_SIZE)
    if 0 < rest <= PACKAGE_OVERHEAD:
        raise ObjectTampered(f"{ciphertext_size} is not a valid encrypted size")
    if full + (1 if rest else 0) > MAX_PACKAGES:
        raise ObjectTampered("encrypted size exceeds 2^32 packages")
    return full * PACKAGE_SIZE + (rest - PACKAGE_OVERHEAD if rest else 0)
