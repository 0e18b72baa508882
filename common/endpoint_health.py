"""Endpoint health memory shared by the gateway's storage-node pool and its KES client pool.

After `error_limit` consecutive failures an endpoint is sidelined for `cooldown` seconds; then
exactly one caller is let through as a probe. A probe that succeeds restores the endpoint, one
that fails sidelines it again (Swift's ErrorLimiter, kms-go's load balancer). Callers decide
what a failure is: a transport error or a timeout, never an application answer such as
"not found". Thread-safe, so sync and async callers can share one instance.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

__all__ = ["EndpointHealth", "EndpointState", "HealthStatistics"]


@dataclass
class EndpointState:
    """What is remembered about one endpoint."""

    consecutive_failures: int = 0
    sidelined_until: float = 0.0  # monotonic time; 0 = not sidelined
    probe_until: float = 0.0  # a probe is in flight until then
    total_failures: int = 0
    last_error: str = ""


@dataclass(frozen=True)
class HealthStatistics:
    """A snapshot for /metrics and the admin summary."""

    endpoints: int
    sidelined: tuple[str, ...]
    total_failures: dict[str, int] = field(default_factory=dict)
    last_errors: dict[str, str] = field(default_factory=dict)


class EndpointHealth:
    """Error-limits endpoints: `error_limit` failures sideline one for `cooldown` seconds."""

    def __init__(self, *, error_limit: int = 1, cooldown: float = 10.0,
                 clock: Callable[[], float] = time.monotonic):
        if error_limit < 1 or cooldown < 0:
            raise ValueError("error_limit must be >= 1 and cooldown >= 0")
        self.error_limit = error_limit
        self.cooldown = cooldown
        self._clock = clock
        self._lock = threading.Lock()
        self._states: dict[str, EndpointState] = {}

    def _state(self, endpoint: str) -> EndpointState:
        return self._states.setdefault(endpoint, EndpointState())

    def is_sidelined(self, endpoint: str) -> bool:
        """True while the endpoint is kept out (no probe claimed)."""
        with self._lock:
            state = self._states.get(endpoint)
            return bool(state and state.sidelined_until and self._clock() < state.sidelined_until)

    def is_available(self, endpoint: str) -> bool:
        """May a request use this endpoint now? Claims the single probe when the cooldown ran
        out, so the caller must report the outcome with record_success / record_failure."""
        with self._lock:
            state = self._states.get(endpoint)
            if state is None or not state.sidelined_until:
                return True
            now = self._clock()
            if now < state.sidelined_until or now < state.probe_until:
                return False
            # a probe that never reported back (its caller was cancelled) expires too
            state.probe_until = now + max(self.cooldown, 1.0)
            return True

    def record_success(self, endpoint: str) -> None:
        with self._lock:
            state = self._state(endpoint)
            state.consecutive_failures = 0
            state.sidelined_until = 0.0
            state.probe_until = 0.0

    def record_failure(self, endpoint: str, reason: str = "") -> None:
        with self._lock:
            state = self._state(endpoint)
            state.consecutive_failures += 1
            state.total_failures += 1
            state.last_error = reason
            state.probe_until = 0.0
            if state.consecutive_failures >= self.error_limit:
                state.sidelined_until = self._clock() + self.cooldown

    def order(self, endpoints: Iterable[str]) -> list[str]:
        """Endpoints in the given order, sidelined ones moved last (claims no probe)."""
        items = list(endpoints)
        return [e for e in items if not self.is_sidelined(e)] + [
            e for e in items if self.is_sidelined(e)
        ]

    def statistics(self) -> HealthStatistics:
        with self._lock:
            now = self._clock()
            sidelined = tuple(sorted(e for e, s in self._states.items()
                                     if s.sidelined_until and now < s.sidelined_until))
            return HealthStatistics(
                endpoints=len(self._states), sidelined=sidelined,
                total_failures={e: s.total_failures for e, s in self._states.items()},
                last_errors={e: s.last_error for e, s in self._states.items() if s.last_error},
            )
