"""A full heal pass, now (`python -m cluster heal`): buckets first, then every key that any node
of any set lists, each checked and repaired with `Healer.heal_object`, a few at a time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.healing.healer import HealCounters, Healer, HealResult
from gateway.healing.walk import walk_set

__all__ = ["PassReport", "heal_pass"]


@dataclass
class PassReport:
    """What a pass did, for the operator."""

    buckets_healed: list[str] = field(default_factory=list)  # "bucket on node-3, node-4"
    counts: HealCounters = field(default_factory=HealCounters)  # objects checked, healed...
    deferred: list[str] = field(default_factory=list)  # keys left for later (node offline)
    failures: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, r: HealResult) -> None:
        self.counts.add(r)
        outcome = r.outcome
        if outcome == "deferred":
            why = f"offline: {', '.join(r.offline)}" if r.offline else \
                f"version settling: {', '.join(r.waiting)}"
            self.deferred.append(f"{r.bucket}/{r.key} ({why})")
        elif outcome == "failed":
            self.failures.append(f"{r.bucket}/{r.key}: {r.error or '; '.join(r.failed)}")


async def heal_pass(healer: Healer, *, buckets: list[str] | None = None, deep: bool = False,
                    concurrency: int = 4,
                    on_result: Callable[[HealResult], None] | None = None) -> PassReport:
    """Heals the buckets (all, or the named ones) and every key in them."""
    started = time.monotonic()
    report = PassReport()
    if buckets:
        healed = [r for b in buckets for r in await healer.heal_buckets(b)]
    else:
        healed = await healer.heal_buckets()
    report.buckets_healed = [f"{r.bucket} on {', '.join(r.made_on)}" for r in healed
                             if r.made_on]
    names = [r.bucket for r in healed if r.exists]
    report.failures += [f"bucket {r.bucket}: too few nodes answered" for r in healed
                        if r.exists is None]
    gate = asyncio.Semaphore(max(1, concurrency))
    running: set[asyncio.Task[None]] = set()

    async def one(bucket: str, key: str) -> None:
        try:
            result = await healer.heal_object(bucket, key, deep=deep)
        finally:
            gate.release()
        report.add(result)
        if on_result is not None:
            on_result(result)

    placement = healer.ctx.placement
    for bucket in names:
        for index in range(placement.set_count):
            async for state in walk_set(healer.ctx, bucket, placement.set_members(index)):
                await gate.acquire()
                task = asyncio.ensure_future(one(bucket, state.key))
                running.add(task)
                task.add_done_callback(running.discard)
    if running:
        await asyncio.gather(*running)
    report.seconds = time.monotonic() - started
    return report
