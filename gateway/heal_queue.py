"""The heal queue's seam: where reads and writes report versions that some node lacks or holds
damaged, for the healer to repair.

`HealQueue` is the interface; `MemoryHealQueue` a bounded in-memory implementation (the
healer will supply a durable one). Recording never blocks a request and never fails it.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["HealItem", "HealQueue", "HealQueueStatistics", "MemoryHealQueue"]


@dataclass(frozen=True)
class HealItem:
    """A version that is not whole on every node of its set, and why."""

    bucket: str
    key: str
    version_id: str  # "" = the latest (e.g. a write whose version never committed anywhere)
    reason: str  # "write-missed", "commit-missed", "read-missing", "read-corrupt", "meta-stale"
    nodes: tuple[str, ...] = ()  # nodes known to lack or hold a bad copy
    queued_at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class HealQueueStatistics:
    queued: int
    recorded: int
    dropped: int


class HealQueue(Protocol):
    """Where the object layer reports versions needing repair. `record` must not block."""

    def record(self, item: HealItem) -> None: ...

    def statistics(self) -> HealQueueStatistics: ...


class MemoryHealQueue:
    """A bounded in-memory queue; a repeat of a queued version merges into it; when full, the
    oldest item is dropped (and counted, so the backlog and the loss are visible)."""

    def __init__(self, capacity: int = 100_000):
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str, str], HealItem] = OrderedDict()
        self._lock = threading.Lock()
        self._recorded = 0
        self._dropped = 0

    def record(self, item: HealItem) -> None:
        key = (item.bucket, item.key, item.version_id)
        with self._lock:
            self._recorded += 1
            old = self._items.pop(key, None)
            if old is not None:
                nodes = tuple(sorted(set(old.nodes) | set(item.nodes)))
                item = HealItem(item.bucket, item.key, item.version_id, item.reason, nodes,
                                old.queued_at)
            self._items[key] = item
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)
                self._dropped += 1

    def pop(self) -> HealItem | None:
        """The oldest item, or None when the queue is empty."""
        with self._lock:
            if not self._items:
                return None
            return self._items.popitem(last=False)[1]

    def items(self) -> list[HealItem]:
        with self._lock:
            return list(self._items.values())

    def statistics(self) -> HealQueueStatistics:
        with self._lock:
            return HealQueueStatistics(len(self._items), self._recorded, self._dropped)
