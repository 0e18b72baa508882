"""The background scanner: walks every bucket of every erasure set comparing the set's nodes'
listings, and queues each key whose nodes disagree (a node lacks it, or lists another latest
version). Every `deep_every`-th cycle it also deep-checks each agreeing key (VerifyShard on
every holder, at its own slower pace), which finds missing shard files and bitrot no request
has touched.

Rate-limited (keys per second, deep checks per second) so it never starves client traffic;
its position (cycle, bucket, set, last key) is saved in the heal database every few hundred
keys, so a restarted gateway resumes where it stopped. One gateway runs it (`--scanner`):
more would only repeat the same work, since healing is idempotent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, replace

from gateway.heal_queue import HealItem
from gateway.healing.durable_queue import DurableHealQueue
from gateway.healing.healer import Healer
from gateway.healing.walk import walk_set
from gateway.healing.worker import RateLimiter

__all__ = ["ScanPosition", "Scanner", "ScannerStatistics"]

log = logging.getLogger("tessera.heal")
STATE_NAME = "scanner"


@dataclass(frozen=True)
class ScanPosition:
    """Where a cycle is: keys after `after` in set `set_index` of `bucket` are still to come."""

    cycle: int = 1
    bucket: str = ""
    set_index: int = 0
    after: str = ""
    started_at: float = 0.0


@dataclass(frozen=True)
class ScannerStatistics:
    position: ScanPosition
    cycles_completed: int
    keys_scanned: int  # since this gateway started
    diverged: int  # keys queued because the set's nodes disagreed
    deep_checked: int  # keys deep-verified
    last_cycle_seconds: float | None
    deep_cycle: bool  # the current cycle also verifies shard hashes


class Scanner:
    """See the module docstring. `run()` loops forever; `cycle()` does one pass."""

    def __init__(self, healer: Healer, queue: DurableHealQueue, *, rate: float = 100.0,
                 interval: float = 600.0, deep_every: int = 0, deep_rate: float = 2.0,
                 checkpoint_every: int = 200):
        self.healer = healer
        self.queue = queue
        self.limiter = RateLimiter(rate)
        self.deep_limiter = RateLimiter(deep_rate)
        self.interval = interval
        self.deep_every = deep_every
        self.checkpoint_every = checkpoint_every
        self.position = ScanPosition()
        self.cycles_completed = 0
        self.keys_scanned = 0
        self.diverged = 0
        self.deep_checked = 0
        self.last_cycle_seconds: float | None = None

    @property
    def deep_cycle(self) -> bool:
        return self.deep_every > 0 and self.position.cycle % self.deep_every == 0

    def statistics(self) -> ScannerStatistics:
        return ScannerStatistics(self.position, self.cycles_completed, self.keys_scanned,
                                 self.diverged, self.deep_checked, self.last_cycle_seconds,
                                 self.deep_cycle)

    async def load(self) -> None:
        saved = await self.queue.load_state(STATE_NAME)
        if saved:
            self.position = ScanPosition(**saved)

    async def _save(self) -> None:
        await self.queue.save_state(STATE_NAME, asdict(self.position))

    async def run(self) -> None:
        await self.load()
        while True:
            try:
                await self.cycle()
            except Exception:  # a bug or a lost quorum: log, wait, go on from the checkpoint
                log.exception("scanner cycle %d failed", self.position.cycle)
            await asyncio.sleep(self.interval)

    async def cycle(self) -> None:
        """Finishes the current cycle (from its saved position) and starts the next."""
        if not self.position.started_at:
            self.position = replace(self.position, started_at=time.time())
        buckets = sorted(b.bucket for b in await self.healer.heal_buckets() if b.exists)
        placement = self.healer.ctx.placement
        for bucket in buckets:
            if bucket < self.position.bucket:
                continue
            for set_index in range(placement.set_count):
                same = (bucket, set_index) == (self.position.bucket, self.position.set_index)
                if bucket == self.position.bucket and set_index < self.position.set_index:
                    continue
                after = self.position.after if same else ""
                self.position = replace(self.position, bucket=bucket, set_index=set_index,
                                        after=after)
                await self._scan_set(bucket, placement.set_members(set_index), after)
        seconds = time.time() - self.position.started_at
        log.info("scanner cycle %d done in %.1fs (%d keys diverged so far)",
                 self.position.cycle, seconds, self.diverged)
        self.last_cycle_seconds = seconds
        self.cycles_completed += 1
        self.position = ScanPosition(cycle=self.position.cycle + 1, started_at=time.time())
        await self._save()

    async def _scan_set(self, bucket: str, nodes: tuple[str, ...], after: str) -> None:
        since_save = 0
        async for state in walk_set(self.healer.ctx, bucket, nodes, start_after=after):
            await self.limiter.acquire()
            self.keys_scanned += 1
            if state.diverged:
                self.diverged += 1
                self.queue.record(HealItem(bucket, state.key, state.newest, "scan-diverged",
                                           state.behind))
            elif self.deep_cycle and state.latest:
                await self.deep_limiter.acquire()
                self.deep_checked += 1
                result = await self.healer.heal_object(bucket, state.key, deep=True)
                if not result.complete:  # the queue retries it with back-off
                    self.queue.record(HealItem(bucket, state.key, state.newest, "scan-deep"))
            self.position = replace(self.position, after=state.key)
            since_save += 1
            if since_save >= self.checkpoint_every:
                await self._save()
                since_save = 0
        await self._save()
