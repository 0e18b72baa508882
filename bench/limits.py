"""This machine's one-core limits, measured in the same run as the figures compared to them.

`measure()` runs each probe once per process and caches the result, so every section of one
`python -m bench` run reports ratios against the same numbers. MB = 10^6 bytes.
"""

from __future__ import annotations

import hashlib
import os
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

__all__ = ["Limits", "measure", "run"]

MB = 1_000_000
PROBE_SECONDS = 0.4  # per probe; the whole section stays near 4 s


@dataclass(frozen=True)
class Limits:
    """MB/s per core for each building block."""

    loopback_tcp: float
    disk_write_fsync: float
    aes_gcm_64k: float
    zfec_encode_4_2: float
    md5: float
    sha256: float
    xxh3_128: float


def _rate(fn: Callable[[], int], seconds: float = PROBE_SECONDS) -> float:
    """MB/s of calling `fn` (which returns bytes processed) repeatedly for `seconds`."""
    fn()  # warm up
    done, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        done += fn()
    return done / elapsed / MB


def loopback_tcp(seconds: float = PROBE_SECONDS) -> float:
    """One sender thread to one receiver thread over 127.0.0.1, 1 MiB writes."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = [0]

    def receive() -> None:
        conn, _ = listener.accept()
        buf = bytearray(1 << 20)
        with conn:
            while n := conn.recv_into(buf):
                received[0] += n

    reader = threading.Thread(target=receive)
    reader.start()
    payload = os.urandom(1 << 20)
    with socket.create_connection(("127.0.0.1", port)) as sender:
        start = time.perf_counter()
        while time.perf_counter() - start < seconds:
            sender.sendall(payload)
        sender.shutdown(socket.SHUT_WR)
        reader.join()
        elapsed = time.perf_counter() - start
    listener.close()
    return received[0] / elapsed / MB


def disk_write_fsync(directory: str | None = None, size: int = 256 << 20) -> float:
    """Sequential 1 MiB writes of a new file, then fsync, in `directory` (default: tmp)."""
    payload = os.urandom(1 << 20)
    with tempfile.NamedTemporaryFile(dir=directory) as f:
        fd = f.fileno()
        start = time.perf_counter()
        for _ in range(size >> 20):
            os.write(fd, payload)
        os.fsync(fd)
        elapsed = time.perf_counter() - start
    return size / elapsed / MB


def aes_gcm_64k() -> float:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    aead, nonce, package = AESGCM(os.urandom(32)), os.urandom(12), os.urandom(64 * 1024)
    return _rate(lambda: len(aead.encrypt(nonce, package, None)) - 16)


def zfec_encode_4_2() -> float:
    import zfec

    encoder = zfec.Encoder(4, 6)
    shards = tuple(os.urandom(262_272) for _ in range(4))  # a 1,049,088-byte block
    data_bytes = sum(len(s) for s in shards)

    def encode() -> int:
        encoder.encode(shards)
        return data_bytes
    return _rate(encode)


def _hash_rate(new: Callable[[bytes], object]) -> float:
    buf = os.urandom(1 << 20)

    def one() -> int:
        new(buf)
        return len(buf)
    return _rate(one)


_CACHE: Limits | None = None


def measure() -> Limits:
    """The limits of this machine now (measured once per process)."""
    global _CACHE
    if _CACHE is None:
        import xxhash

        _CACHE = Limits(
            loopback_tcp=loopback_tcp(),
            disk_write_fsync=disk_write_fsync(),
            aes_gcm_64k=aes_gcm_64k(),
            zfec_encode_4_2=zfec_encode_4_2(),
            md5=_hash_rate(lambda b: hashlib.md5(b).digest()),
            sha256=_hash_rate(lambda b: hashlib.sha256(b).digest()),
            xxh3_128=_hash_rate(xxhash.xxh3_128_digest),
        )
    return _CACHE


_NOTES = {
    "loopback_tcp": "1 MiB sends, one thread each side",
    "disk_write_fsync": "256 MiB new file in 1 MiB writes + fsync (tmp dir)",
    "aes_gcm_64k": "AES-256-GCM encrypt, 64 KiB packages",
    "zfec_encode_4_2": "4+2, 1 MiB blocks (MB/s of data in)",
    "md5": "1 MiB buffers",
    "sha256": "1 MiB buffers",
    "xxh3_128": "1 MiB buffers",
}


def run() -> list[dict]:
    return [{"limit": name, "MB/s": value, "how": _NOTES[name]}
            for name, value in asdict(measure()).items()]
