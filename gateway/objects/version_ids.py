"""Version ids: UUIDv7 strings, time-ordered, so a later version has a higher id.

Within one gateway ids are strictly increasing even inside one millisecond (the 12-bit
`rand_a` field is a counter, RFC 9562 method 1); across gateways the millisecond orders them.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

__all__ = ["new_version_id", "version_time_ns"]

_lock = threading.Lock()
_last_ms = 0
_counter = 0


def new_version_id() -> str:
    """A new UUIDv7 in canonical lower-case form (its string order is its time order)."""
    global _last_ms, _counter
    with _lock:
        ms = time.time_ns() // 1_000_000
        if ms > _last_ms:
            _last_ms, _counter = ms, int.from_bytes(os.urandom(1), "big")  # leave headroom
        else:
            _counter += 1
            if _counter > 0xFFF:  # counter exhausted: borrow the next millisecond
                _last_ms, _counter = _last_ms + 1, 0
            ms = _last_ms
    rand_b = int.from_bytes(os.urandom(8), "big") & ((1 << 62) - 1)
    value = (ms << 80) | (0x7 << 76) | (_counter << 64) | (0b10 << 62) | rand_b
    return str(uuid.UUID(int=value))


def version_time_ns(version_id: str) -> int:
    """The creation time encoded in a UUIDv7 version id (nanoseconds, millisecond precision)."""
    return (uuid.UUID(version_id).int >> 80) * 1_000_000
