"""What the chaos load believes about each key: the states an S3 client may legitimately see.

After an acknowledged PUT a key has exactly one acceptable state (those bytes); after an
acknowledged DELETE, "absent". A request that failed (after the client's retries) may or may
not have taken effect, so the key then accepts either the old or the new state until a read
settles which. Reads compare a SHA-256 of the whole body: anything else is corruption.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

__all__ = ["ABSENT", "Expected", "KeyBook", "KeyState"]


@dataclass(frozen=True)
class Expected:
    """One acceptable state of a key: its bytes' digest and size, and how to read it."""

    sha256: str
    size: int
    mode: str  # "plain" | "sse-s3" | "sse-c"
    customer_key: bytes | None = field(default=None, repr=False)  # SSE-C only


ABSENT = Expected("", -1, "absent")


@dataclass
class KeyState:
    name: str
    states: list[Expected] = field(default_factory=lambda: [ABSENT])  # newest last
    generation: int = 0  # bumped when an operation on the key ends
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def settled(self) -> Expected | None:
        """The one acceptable state, or None while a failed request left it ambiguous."""
        return self.states[0] if len(self.states) == 1 else None

    def acknowledge(self, state: Expected) -> None:
        self.states = [state]
        self.generation += 1

    def unknown(self, state: Expected) -> None:
        """A request for `state` failed: it may or may not have been applied."""
        if state not in self.states:
            self.states.append(state)
        self.generation += 1

    def settle(self, state: Expected) -> None:
        self.states = [state]
        self.generation += 1


class KeyBook:
    """The keys of one load (`prefix` + index) and their states; a worker takes a key's lock
    for the length of one operation, so each key sees one request at a time."""

    def __init__(self, prefix: str, count: int):
        self.keys = [KeyState(f"{prefix}{i:05d}") for i in range(count)]
        self.by_name = {k.name: k for k in self.keys}

    def take(self, rng: random.Random, want_present: bool = False) -> KeyState | None:
        """A random key nobody is using (locked: release it), preferring present ones."""
        order = rng.sample(self.keys, len(self.keys))
        if want_present:
            order.sort(key=lambda k: k.settled is ABSENT)
        for key in order:
            if key.lock.acquire(blocking=False):
                return key
        return None

    def present(self) -> list[KeyState]:
        return [k for k in self.keys if k.states != [ABSENT]]

    def stable_view(self) -> dict[str, tuple[int, bool]]:
        """generation and busy-ness of every key, for checking a listing against."""
        return {k.name: (k.generation, k.lock.locked()) for k in self.keys}
