"""Streaming package encryption and decryption: arbitrary chunks in, whole packages out.

Both classes are synchronous and hold at most one package of state, so the object layer can
hand them a large batch (e.g. one 1 MiB erasure block) per call from a worker thread:
`cryptography`'s AES-GCM releases the GIL. An instance must not be used by two threads at
once.
"""

from __future__ import annotations

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.crypto.packages import (
    ENCRYPTED_PACKAGE_SIZE,
    HEADER_SIZE,
    MAX_PACKAGES,
    PACKAGE_OVERHEAD,
    PACKAGE_SIZE,
    TAG_SIZE,
    PackageHeader,
    aead_nonce,
    new_stream_nonce,
)
from gateway.objects.errors import ObjectTampered

__all__ = ["PackageDecryptor", "PackageEncryptor", "decrypt_bytes", "encrypt_bytes"]

Buffer = bytes | bytearray | memoryview


class PackageEncryptor:
    """Encrypts one stream under `key` (32 bytes), starting at sequence number 0.

    `update` returns every package that is certainly not the last one; up to 64 KiB of
    plaintext is held back until more arrives or `finish` seals it as the final package.
    """

    def __init__(self, key: bytes, *, stream_nonce: bytes | None = None) -> None:
        self._aead = AESGCM(key)
        self._nonce = stream_nonce if stream_nonce is not None else new_stream_nonce()
        self._full_header = PackageHeader.build(PACKAGE_SIZE, self._nonce, final=False)
        self._full_aad = self._full_header[:4]
        self._nonce_head = self._full_header[4:12]
        self._nonce_tail = int.from_bytes(self._full_header[12:16], "little")
        self._sequence = 0
        self._pending = bytearray()
        self._finished = False
        self.plaintext_size = 0
        self.ciphertext_size = 0

    @property
    def stream_nonce(self) -> bytes:
        return self._nonce

    def update(self, data: Buffer) -> bytearray:
        """Adds plaintext; returns zero or more whole, non-final packages."""
        if self._finished:
            raise ValueError("encryptor already finished")
        self.plaintext_size += len(data)
        total = len(self._pending) + len(data)
        if total <= PACKAGE_SIZE:
            self._pending += data
            return bytearray()
        count = (total - 1) // PACKAGE_SIZE  # keep >= 1 byte back: it may end the stream
        if self._sequence + count > MAX_PACKAGES:
            raise ValueError("stream exceeds 2^32 packages")
        out = bytearray(count * ENCRYPTED_PACKAGE_SIZE)
        with memoryview(data) as whole, memoryview(out) as target:
            rest, slot = whole, 0
            if self._pending:
                take = PACKAGE_SIZE - len(self._pending)
                self._pending += rest[:take]
                self._seal_run(self._pending, target, 0, 1)
                rest, slot = rest[take:], 1
            self._seal_run(rest, target, slot, count - slot)
            self._pending = bytearray(rest[(count - slot) * PACKAGE_SIZE :])
        self.ciphertext_size += len(out)
        return out

    def finish(self) -> bytearray:
        """Seals the held-back plaintext as the final package (nothing for an empty stream)."""
        if self._finished:
            raise ValueError("encryptor already finished")
        self._finished = True
        length = len(self._pending)
        if length == 0:
            return bytearray()
        if self._sequence >= MAX_PACKAGES:
            raise ValueError("stream exceeds 2^32 packages")
        header = PackageHeader.build(length, self._nonce, final=True)
        out = bytearray(length + PACKAGE_OVERHEAD)
        out[:HEADER_SIZE] = header
        with memoryview(out) as target:
            nonce = aead_nonce(header[4:16], self._sequence)
            self._aead.encrypt_into(nonce, self._pending, header[:4], target[HEADER_SIZE:])
        self._sequence += 1
        self._pending = bytearray()
        self.ciphertext_size += len(out)
        return out

    def _seal_run(self, plaintext: Buffer, target: memoryview, slot: int, count: int) -> None:
        """Seals `count` full packages of `plaintext` into `target` from package `slot` on."""
        # The hot loop of every encrypted PUT: locals only, one C call per 64 KiB.
        seal, aad, header = self._aead.encrypt_into, self._full_aad, self._full_header
        head, tail, sequence = self._nonce_head, self._nonce_tail, self._sequence
        with memoryview(plaintext) as source:
            for i in range(count):
                offset = (slot + i) * ENCRYPTED_PACKAGE_SIZE
                target[offset : offset + HEADER_SIZE] = header
                seal(
                    head + (tail ^ (sequence + i)).to_bytes(4, "little"),
                    source[i * PACKAGE_SIZE : (i + 1) * PACKAGE_SIZE],
                    aad,
                    target[offset + HEADER_SIZE : offset + ENCRYPTED_PACKAGE_SIZE],
                )
        self._sequence = sequence + count


class PackageDecryptor:
    """Decrypts one stream (or a run of it) under `key`, authenticating every package.

    first_sequence: the sequence number of the first package fed (a range read starts
        mid-stream).
    skip, keep: plaintext bytes to drop from the start, then to deliver (None = all).
    expect_final: the ciphertext fed runs to the end of the stream, so it must end with the
        final package; `finish` raises otherwise (truncation).

    Every failure is ObjectTampered: a bad tag (wrong key, flipped bit, packages swapped or
    spliced from another stream), a short non-final package, data after the final package,
    a nonce from another stream, or a stream cut inside or before its final package.
    """

    def __init__(
        self,
        key: bytes,
        *,
        first_sequence: int = 0,
        skip: int = 0,
        keep: int | None = None,
        expect_final: bool = True,
    ) -> None:
        if not 0 <= first_sequence < MAX_PACKAGES:
            raise ValueError("first_sequence out of range")
        if skip < 0 or (keep is not None and keep < 0):
            raise ValueError("skip and keep must not be negative")
        self._aead = AESGCM(key)
        self._sequence = first_sequence
        self._skip = skip
        self._keep = keep
        self._expect_final = expect_final
        self._stream_nonce: bytes | None = None
        self._full_header = b""  # set from the first package: no header equals it before
        self._full_aad = b""
        self._nonce_head = b""
        self._nonce_tail = 0
        self._seen_final = False
        self._pending = bytearray()

    @property
    def next_sequence(self) -> int:
        return self._sequence

    def update(self, data: Buffer) -> bytearray:
        """Adds ciphertext; returns the plaintext of every whole package received."""
        out = bytearray(len(self._pending) + len(data))
        with memoryview(data) as whole, memoryview(out) as target:
            rest, written = self._complete_pending(whole, target)
            if not self._pending:
                consumed, written = self._open_run(rest, target, written)
                self._pending = bytearray(rest[consumed:])
        return self._trim(out, written)

    def finish(self) -> None:
        """Checks that the stream ended where it should. Raises ObjectTampered if not."""
        if self._pending:
            raise ObjectTampered("ciphertext ends inside a package")
        if self._expect_final and not self._seen_final:
            raise ObjectTampered("encrypted stream is truncated: final package missing")

    def _complete_pending(self, view: memoryview, target: memoryview) -> tuple[memoryview, int]:
        """Feeds the partial package carried over from the last call; it is copied once."""
        written = 0
        while self._pending and len(view):
            have = len(self._pending)
            if have < HEADER_SIZE:
                want = HEADER_SIZE
            else:
                want = PACKAGE_OVERHEAD + PackageHeader(bytes(self._pending[:HEADER_SIZE])).length
            take = min(want - have, len(view))
            self._pending += view[:take]
            view = view[take:]
            if len(self._pending) == want and want > HEADER_SIZE:
                with memoryview(self._pending) as package:
                    written = self._open_one(package, target, written)
                self._pending = bytearray()
        return view, written

    def _open_run(self, view: memoryview, target: memoryview, written: int) -> tuple[int, int]:
        """Opens every whole package in `view`; returns (bytes consumed, plaintext end)."""
        pos, size = 0, len(view)
        while size - pos >= HEADER_SIZE:
            if view[pos : pos + HEADER_SIZE] == self._full_header:
                if size - pos < ENCRYPTED_PACKAGE_SIZE:
                    break
                written = self._open_full(view[pos : pos + ENCRYPTED_PACKAGE_SIZE], target, written)
                pos += ENCRYPTED_PACKAGE_SIZE
                continue
            end = pos + PackageHeader(bytes(view[pos : pos + HEADER_SIZE])).length
            end += PACKAGE_OVERHEAD
            if end > size:
                break
            written = self._open_one(view[pos:end], target, written)
            pos = end
        return pos, written

    def _open_full(self, package: memoryview, target: memoryview, written: int) -> int:
        """Fast path: a full non-final package of the stream already seen. Its header equals
        the expected one, which covers version, cipher, length, nonce and final flag."""
        if self._seen_final:
            raise ObjectTampered("data after the final package")
        sequence = self._sequence
        if sequence >= MAX_PACKAGES:
            raise ObjectTampered("stream exceeds 2^32 packages")
        nonce = self._nonce_head + (self._nonce_tail ^ sequence).to_bytes(4, "little")
        try:
            self._aead.decrypt_into(
                nonce, package[HEADER_SIZE:], self._full_aad,
                target[written : written + PACKAGE_SIZE],
            )
        except InvalidTag as exc:
            raise ObjectTampered(f"package {sequence} failed authentication") from exc
        self._sequence = sequence + 1
        return written + PACKAGE_SIZE

    def _open_one(self, package: memoryview, target: memoryview, written: int) -> int:
        """Any package: parses and checks its header, then opens it."""
        header = PackageHeader(bytes(package[:HEADER_SIZE]))
        self._check_order(header)
        if self._sequence >= MAX_PACKAGES:
            raise ObjectTampered("stream exceeds 2^32 packages")
        nonce = aead_nonce(header.nonce, self._sequence)
        body = package[HEADER_SIZE : HEADER_SIZE + header.length + TAG_SIZE]
        try:
            self._aead.decrypt_into(
                nonce, body, header.aad, target[written : written + header.length]
            )
        except InvalidTag as exc:
            raise ObjectTampered(f"package {self._sequence} failed authentication") from exc
        self._sequence += 1
        self._seen_final = header.final
        return written + header.length

    def _check_order(self, header: PackageHeader) -> None:
        if self._seen_final:
            raise ObjectTampered("data after the final package")
        if not header.final and header.length != PACKAGE_SIZE:
            raise ObjectTampered("a non-final package is shorter than 64 KiB")
        if self._stream_nonce is None:
            self._stream_nonce = header.stream_nonce
            full = PackageHeader.build(PACKAGE_SIZE, header.stream_nonce, final=False)
            self._full_header = full
            self._full_aad = full[:4]
            self._nonce_head = full[4:12]
            self._nonce_tail = int.from_bytes(full[12:16], "little")
        elif header.stream_nonce != self._stream_nonce:
            raise ObjectTampered("package belongs to another stream")

    def _trim(self, out: bytearray, written: int) -> bytearray:
        start = min(self._skip, written)
        self._skip -= start
        end = written
        if self._keep is not None:
            end = min(end, start + self._keep)
            self._keep -= end - start
        if start == 0:
            del out[end:]
            return out
        return out[start:end]


def encrypt_bytes(key: bytes, plaintext: Buffer, *, stream_nonce: bytes | None = None) -> bytes:
    """A whole stream's ciphertext for `plaintext` (small payloads: sealed keys, ETags)."""
    encryptor = PackageEncryptor(key, stream_nonce=stream_nonce)
    return bytes(encryptor.update(plaintext) + encryptor.finish())


def decrypt_bytes(key: bytes, ciphertext: Buffer) -> bytes:
    """The plaintext of a whole stream; raises ObjectTampered if it is not authentic."""
    if len(ciphertext) == 0:
        return b""
    decryptor = PackageDecryptor(key)
    plaintext = decryptor.update(ciphertext)
    decryptor.finish()
    return bytes(plaintext)
