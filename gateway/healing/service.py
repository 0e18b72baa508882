"""Healing in a running gateway: the durable queue, the healer, the worker that drains the
queue and (on the gateway started with `--scanner`) the scanner; `statistics()` for metrics
and `make cluster-status`."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from pathlib import Path

from gateway.healing.config import HealConfig
from gateway.healing.durable_queue import DurableHealQueue
from gateway.healing.healer import Healer
from gateway.healing.scanner import Scanner, ScannerStatistics
from gateway.healing.worker import HealWorker
from gateway.objects.context import LayerContext

__all__ = ["HealService", "HealStatistics", "open_heal_queue"]

QUEUE_FILE = "heal.db"


def open_heal_queue(state_dir: Path | None, config: HealConfig) -> DurableHealQueue:
    """The gateway's queue: `<state_dir>/heal.db`, or in memory without a state directory."""
    path = state_dir / QUEUE_FILE if state_dir is not None else None
    return DurableHealQueue(path, config.queue_policy())


@dataclass(frozen=True)
class HealStatistics:
    """Healing as this gateway sees it (counters since it started; the backlog is durable).

    backlog: queue entries waiting to be healed (in flight included); in_flight: being healed
    now; dead_letters: entries that failed `max_attempts` times (kept, out of the backlog);
    queued: reports received (writes that missed a node, degraded reads, the scanner);
    merged: reports that joined an entry already waiting; dropped: reports refused because
    the queue was full (the scanner finds them again); checked: heal_object calls; healed:
    objects where something was repaired; failed / deferred: heal attempts that failed / had
    to wait for an offline node or an unsettled version; shards_rebuilt / bytes_rebuilt:
    shard copies written; dangling_rolled_back: versions rolled back as dangling;
    buckets_healed: (bucket, node) pairs re-created; heal_rate: entries healed per second over
    the last minute; eta_seconds: backlog / heal_rate (None while nothing is being healed).
    """

    backlog: int
    in_flight: int
    dead_letters: int
    queued: int
    merged: int
    dropped: int
    checked: int
    healed: int
    failed: int
    deferred: int
    shards_rebuilt: int
    bytes_rebuilt: int
    dangling_rolled_back: int
    meta_fixed: int
    buckets_healed: int
    last_error: str
    last_error_at: float | None
    heal_rate: float
    eta_seconds: float | None
    scanner: ScannerStatistics | None


class HealService:
    """Owns the gateway's healing tasks. `start()` inside the event loop; `close()` at exit."""

    def __init__(self, ctx: LayerContext, queue: DurableHealQueue, config: HealConfig):
        self.config = config
        self.queue = queue
        self.healer = Healer(ctx, dangling_grace=config.dangling_grace,
                             commit_window=config.commit_window)
        self.worker = HealWorker(self.healer, queue, concurrency=config.workers,
                                 rate=config.rate)
        self.scanner = Scanner(self.healer, queue, rate=config.scanner_rate,
                               interval=config.scanner_interval,
                               deep_every=config.scanner_deep_every,
                               deep_rate=config.scanner_deep_rate) if config.scanner else None
        self._scanner_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.worker.start()
        if self.scanner is not None and self._scanner_task is None:
            self._scanner_task = asyncio.ensure_future(self.scanner.run())

    async def close(self) -> None:
        await self.worker.close()
        if self._scanner_task is not None:
            self._scanner_task.cancel()
            with contextlib.suppress(BaseException):
                await self._scanner_task
            self._scanner_task = None
        await asyncio.get_running_loop().run_in_executor(None, self.queue.close)

    def statistics(self) -> HealStatistics:
        q = self.queue.counts()
        c = self.healer.counters
        rate = self.worker.rate()
        eta = q.backlog / rate if rate > 0 and q.backlog else None
        return HealStatistics(
            backlog=q.backlog, in_flight=q.in_flight, dead_letters=q.dead, queued=q.recorded,
            merged=q.merged, dropped=q.dropped, checked=c.checked, healed=c.healed,
            failed=c.failed, deferred=c.deferred, shards_rebuilt=c.shards_rebuilt,
            bytes_rebuilt=c.bytes_rebuilt, dangling_rolled_back=c.dangling_rolled_back,
            meta_fixed=c.meta_fixed, buckets_healed=c.buckets_healed,
            last_error=c.last_error, last_error_at=c.last_error_at, heal_rate=rate,
            eta_seconds=eta,
            scanner=self.scanner.statistics() if self.scanner is not None else None)
