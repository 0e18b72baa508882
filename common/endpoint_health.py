"""Health memory for one remote endpoint: sideline it after failures, then let one probe through.

Used by the KES client pool and reusable for storage nodes (Swift's ErrorLimiter, kms-go's
30 s endpoint timeout). States:

    up         -> calls go through; `error_limit` consecutive failures sideline it
    sidelined  -> skipped for `backoff` seconds
    probing    -> backoff elapsed: exactly one caller was handed the endpoint; its success
                  brings it up, its failure sidelines it again for another `backoff`

A probe whose caller never reports back (cancelled) expires after `backoff`, so an endpoint can
never be stuck out for good.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["EndpointHealth", "EndpointState"]


@dataclass(frozen=True)
class EndpointState:
    """A snapshot for metrics: `state` is up, sidelined or probing."""

    name: str
    state: str
    consecutive_failures: int
    failures: int
    successes: int
    last_error: str


class EndpointHealth:
    """Thread-safe failure memory of one endpoint (see the module docstring)."""

    def __init__(self, name: str, *, error_limit: int = 1, backoff: float = 30.0,
                 clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.error_limit = max(1, error_limit)
        self.backoff = backoff
        self._clock = clock
        self._lock = threading.Lock()
        self._state = "up"
        self._until = 0.0  # sidelined until / probe expires at
        self._consecutive = 0
        self.failures = 0
        self.successes = 0
        self.last_error = ""

    @property
    def state(self) -> str:
        return self._state

    def acquire(self) -> bool:
        """May the caller use this endpoint now? A True for a sidelined endpoint whose backoff
        has elapsed makes this caller the single probe."""
        with self._lock:
            if self._state == "up":
                return True
            if self._clock() < self._until:
                return False
            self._state = "probing"
            self._until = self._clock() + self.backoff
            return True

    def success(self) -> None:
        with self._lock:
            self._state = "up"
            self._consecutive = 0
            self.successes += 1

    def failure(self, reason: str = "") -> None:
        with self._lock:
            self._consecutive += 1
            self.failures += 1
            self.last_error = reason
            if self._state == "probing" or self._consecutive >= self.error_limit:
                self._state = "sidelined"
                self._until = self._clock() + self.backoff

    def snapshot(self) -> EndpointState:
        with self._lock:
            return EndpointState(self.name, self._state, self._consecutive, self.failures,
                                 self.successes, self.last_error)
