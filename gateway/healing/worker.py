"""The heal worker: drains the heal queue at a bounded concurrency and rate.

Each entry is healed with `Healer.heal_object` (deep on the reported nodes when a read found
corruption). Healed or healthy: the entry goes. Deferred (a node offline, a newer version not
settled): it comes back after a growing pause, without counting as a failure. Failed: it
backs off exponentially and becomes a dead letter after the queue's attempt budget.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable

from gateway.healing.durable_queue import DurableHealQueue, HealEntry
from gateway.healing.healer import Healer

__all__ = ["HealWorker", "RateLimiter"]

log = logging.getLogger("tessera.heal")
RATE_WINDOW = 60.0  # seconds of completions the heal rate (and ETA) is measured over


class RateLimiter:
    """A token bucket: `rate` acquisitions per second on average, bursts up to `burst`;
    `rate` <= 0 means unlimited."""

    def __init__(self, rate: float, burst: float | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.rate = rate
        self.burst = burst if burst is not None else max(1.0, rate)
        self._clock = clock
        self._tokens = self.burst
        self._last = clock()

    async def acquire(self) -> None:
        if self.rate <= 0:
            return
        while True:
            now = self._clock()
            self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
            self._last = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self.rate)


class HealWorker:
    """Claims due entries and heals them, at most `concurrency` at once and `rate` per second."""

    def __init__(self, healer: Healer, queue: DurableHealQueue, *, concurrency: int = 2,
                 rate: float = 20.0, poll: float = 0.5):
        self.healer = healer
        self.queue = queue
        self.concurrency = max(1, concurrency)
        self.limiter = RateLimiter(rate)
        self.poll = poll
        self._task: asyncio.Task[None] | None = None
        self._healing: set[asyncio.Task[None]] = set()
        self._finished: deque[float] = deque()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        while True:
            free = self.concurrency - len(self._healing)
            if free <= 0:
                await asyncio.wait(self._healing, return_when=asyncio.FIRST_COMPLETED)
                continue
            try:
                entries = await self.queue.claim(free)
            except Exception:  # the database failed: say so, keep trying
                log.exception("heal queue: claim failed")
                entries = []
            if not entries:
                await asyncio.sleep(self.poll)
                continue
            for entry in entries:
                await self.limiter.acquire()
                task = asyncio.ensure_future(self._heal(entry))
                self._healing.add(task)
                task.add_done_callback(self._healing.discard)

    async def _heal(self, entry: HealEntry) -> None:
        deep = (set(entry.nodes) or True) if entry.deep else False
        try:
            result = await self.healer.heal_object(entry.bucket, entry.key, deep=deep)
        except Exception as exc:  # a bug: keep the entry (it backs off) and the worker alive
            log.exception("heal %s/%s crashed", entry.bucket, entry.key)
            await self.queue.retry(entry, f"{type(exc).__name__}: {exc}")
            return
        if result.complete:
            await self.queue.done(entry)
            self._finished.append(time.monotonic())
        elif result.outcome == "deferred":
            why = ", ".join(result.offline) or ", ".join(result.waiting)
            await self.queue.defer(entry, f"waiting for {why}")
        else:
            await self.queue.retry(entry, result.error or "; ".join(result.failed))

    def rate(self) -> float:
        """Entries healed per second over the last minute."""
        cutoff = time.monotonic() - RATE_WINDOW
        while self._finished and self._finished[0] < cutoff:
            self._finished.popleft()
        return len(self._finished) / RATE_WINDOW

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._healing) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        self._task = None
