"""The durable heal queue: one SQLite file in the gateway's state directory (`heal.db`).

One row per object (bucket, key): repeats merge into it (nodes united, a deep check sticks).
`record` never blocks a request: it parks the item in memory and one database thread writes
it within milliseconds (WAL, synchronous=NORMAL: a crashed or killed gateway keeps what was
written; a power loss may lose the last moments, which the scanner finds again).

Bounds: at most `capacity` waiting rows; a new object recorded while the queue is full is
dropped and counted (merges into existing rows still happen), and the scanner finds it on its
next pass. Each row has its own schedule: a failed heal backs off exponentially and after
`max_attempts` failures becomes a dead letter (counted, kept for inspection, out of the
backlog); a heal deferred because a node is offline backs off without counting as a failure.
So one bad entry never holds the queue up, and the backlog cannot grow because of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from gateway.heal_queue import HealItem, HealQueueStatistics

__all__ = ["DEEP_REASONS", "DurableHealQueue", "HealEntry", "QueueCounts", "QueuePolicy"]

T = TypeVar("T")
log = logging.getLogger("tessera.heal")
DEEP_REASONS = frozenset({"read-corrupt", "scan-deep"})  # these ask for VerifyShard

_SCHEMA = """
CREATE TABLE IF NOT EXISTS heal_queue (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    nodes TEXT NOT NULL,           -- JSON list of nodes reported to lack or hold bad copies
    deep INTEGER NOT NULL,         -- 1: verify shard hashes (a read found corruption)
    queued_at REAL NOT NULL,
    due_at REAL NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,   -- failed heals since the last new report
    defers INTEGER NOT NULL DEFAULT 0,     -- heals put off (node offline) in a row
    generation INTEGER NOT NULL DEFAULT 0, -- bumped by every merge
    last_error TEXT NOT NULL DEFAULT '',
    dead INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (bucket, key)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS heal_queue_due ON heal_queue (dead, due_at);
CREATE TABLE IF NOT EXISTS heal_state (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class QueuePolicy:
    """Bounds and schedules of the queue (seconds)."""

    capacity: int = 100_000  # waiting rows; new objects beyond it are dropped (counted)
    dead_capacity: int = 10_000  # dead letters kept; the oldest go first
    max_attempts: int = 8  # failures before an entry becomes a dead letter
    settle: float = 1.0  # a fresh entry waits this long (a blip may end by itself)
    retry_base: float = 5.0  # first back-off after a failure, doubled per failure
    retry_max: float = 3600.0
    defer_base: float = 2.0  # first back-off while a node is offline, doubled per defer
    defer_max: float = 60.0
    buffer: int = 10_000  # reports held in memory while the database thread catches up


@dataclass(frozen=True)
class HealEntry:
    """One claimed row: what to heal, and the generation that `done` / `retry` refer to."""

    bucket: str
    key: str
    version_id: str
    reason: str
    nodes: tuple[str, ...]
    deep: bool
    attempts: int
    defers: int
    generation: int
    queued_at: float


@dataclass(frozen=True)
class QueueCounts:
    backlog: int  # waiting rows (in flight included)
    in_flight: int
    dead: int
    recorded: int  # reports since start
    merged: int  # of those, merged into a waiting row
    dropped: int  # of those, refused because the queue was full


def _jitter(seconds: float) -> float:
    return seconds * random.uniform(0.8, 1.2)


class DurableHealQueue:
    """The heal queue on SQLite (`path` None: an in-memory database, for tests and gateways
    without a state directory). Implements `gateway.heal_queue.HealQueue`."""

    def __init__(self, path: Path | str | None, policy: QueuePolicy | None = None,
                 clock: Callable[[], float] = time.time):
        self.policy = policy or QueuePolicy()
        self.path = Path(path) if path is not None else None
        self._clock = clock
        self._lock = threading.Lock()
        self._incoming: dict[tuple[str, str], tuple[HealItem, float]] = {}  # + reported at
        self._flush_pending = False
        self._in_flight: set[tuple[str, str]] = set()
        self._recorded = self._merged = self._dropped = 0
        self._backlog = self._dead = 0
        self._db_thread = ThreadPoolExecutor(1, thread_name_prefix="heal-db")
        self._conn: sqlite3.Connection | None = None
        self._db_thread.submit(self._open).result()

    # ---- database thread ----

    def _open(self) -> None:
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(self.path) if self.path else ":memory:",
                               isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.executescript(_SCHEMA)
        self._conn = conn
        for dead, count in conn.execute("SELECT dead, COUNT(*) FROM heal_queue GROUP BY dead"):
            if dead:
                self._dead = count
            else:
                self._backlog = count

    def _tx(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        conn = self._conn
        assert conn is not None
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _flush(self) -> None:
        with self._lock:
            items, self._incoming, self._flush_pending = self._incoming, {}, False
        if items:
            self._tx(lambda c: [self._upsert(c, *entry) for entry in items.values()])

    def _flush_logged(self) -> None:
        """A flush scheduled by `record`: nobody waits for it, so a failure is logged here
        (the reports are lost; the scanner finds their objects again)."""
        try:
            self._flush()
        except Exception:
            log.exception("heal queue: could not write reports to %s", self.path or "memory")

    def _upsert(self, conn: sqlite3.Connection, item: HealItem, reported: float) -> None:
        due = reported + self.policy.settle
        deep = int(item.reason in DEEP_REASONS)
        row = conn.execute("SELECT nodes, dead FROM heal_queue WHERE bucket = ? AND key = ?",
                           (item.bucket, item.key)).fetchone()
        if row is None:
            if self._backlog >= self.policy.capacity:
                self._dropped += 1
                return
            conn.execute(
                "INSERT INTO heal_queue (bucket, key, version_id, reason, nodes, deep, "
                "queued_at, due_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (item.bucket, item.key, item.version_id, item.reason,
                 json.dumps(sorted(set(item.nodes))), deep, item.queued_at, due))
            self._backlog += 1
            return
        nodes = sorted(set(json.loads(row[0])) | set(item.nodes))
        # new evidence: a dead letter comes back with a fresh budget of attempts
        conn.execute(
            "UPDATE heal_queue SET version_id = MAX(version_id, ?), reason = ?, nodes = ?, "
            "deep = MAX(deep, ?), due_at = CASE WHEN dead = 1 THEN ? ELSE MIN(due_at, ?) END, "
            "attempts = 0, defers = 0, generation = generation + 1, dead = 0 "
            "WHERE bucket = ? AND key = ?",
            (item.version_id, item.reason, json.dumps(nodes), deep, due, due, item.bucket,
             item.key))
        self._merged += 1
        if row[1]:
            self._dead -= 1
            self._backlog += 1

    def _claim(self, limit: int) -> list[HealEntry]:
        self._flush()
        conn = self._conn
        assert conn is not None
        rows = conn.execute(
            "SELECT bucket, key, version_id, reason, nodes, deep, attempts, defers, generation, "
            "queued_at FROM heal_queue WHERE dead = 0 AND due_at <= ? ORDER BY due_at LIMIT ?",
            (self._clock(), limit + len(self._in_flight))).fetchall()
        out = []
        for r in rows:
            if (r[0], r[1]) in self._in_flight:
                continue
            out.append(HealEntry(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), bool(r[5]),
                                 r[6], r[7], r[8], r[9]))
            self._in_flight.add((r[0], r[1]))
            if len(out) == limit:
                break
        return out

    def _finish(self, entry: HealEntry, outcome: str, error: str) -> None:
        self._flush()
        self._in_flight.discard((entry.bucket, entry.key))

        def job(conn: sqlite3.Connection) -> None:
            where = "WHERE bucket = ? AND key = ? AND generation = ?"
            args = (entry.bucket, entry.key, entry.generation)
            if outcome == "done":
                if conn.execute(f"DELETE FROM heal_queue {where}", args).rowcount:
                    self._backlog -= 1
            elif outcome == "defer":
                delay = min(self.policy.defer_max, self.policy.defer_base * 2 ** entry.defers)
                conn.execute(f"UPDATE heal_queue SET defers = defers + 1, due_at = ?, "
                             f"last_error = ? {where}", (self._clock() + _jitter(delay), error,
                                                        *args))
            elif entry.attempts + 1 >= self.policy.max_attempts:
                if conn.execute(f"UPDATE heal_queue SET attempts = attempts + 1, dead = 1, "
                                f"last_error = ? {where}", (error, *args)).rowcount:
                    self._backlog -= 1
                    self._dead += 1
                    self._trim_dead(conn)
            else:
                delay = min(self.policy.retry_max, self.policy.retry_base * 2 ** entry.attempts)
                conn.execute(f"UPDATE heal_queue SET attempts = attempts + 1, due_at = ?, "
                             f"last_error = ? {where}", (self._clock() + _jitter(delay), error,
                                                        *args))
        self._tx(job)

    def _trim_dead(self, conn: sqlite3.Connection) -> None:
        extra = self._dead - self.policy.dead_capacity
        if extra > 0:
            conn.execute("DELETE FROM heal_queue WHERE (bucket, key) IN (SELECT bucket, key "
                         "FROM heal_queue WHERE dead = 1 ORDER BY queued_at LIMIT ?)", (extra,))
            self._dead -= extra

    # ---- the HealQueue seam (any thread, never blocks on the database) ----

    def record(self, item: HealItem) -> None:
        with self._lock:
            self._recorded += 1
            key = (item.bucket, item.key)
            parked = self._incoming.get(key)
            if parked is None and len(self._incoming) >= self.policy.buffer:
                self._dropped += 1
                return
            if parked is not None:
                old = parked[0]
                self._merged += 1
                reason = item.reason if item.reason in DEEP_REASONS else old.reason
                item = HealItem(item.bucket, item.key, max(item.version_id, old.version_id),
                                reason, tuple(sorted(set(old.nodes) | set(item.nodes))),
                                old.queued_at)
            self._incoming[key] = (item, self._clock())
            schedule = not self._flush_pending
            self._flush_pending = True
        if schedule:
            with contextlib.suppress(RuntimeError):  # closed: the item is lost, as documented
                self._db_thread.submit(self._flush_logged)

    def statistics(self) -> HealQueueStatistics:
        counts = self.counts()
        return HealQueueStatistics(counts.backlog, counts.recorded, counts.dropped)

    def counts(self) -> QueueCounts:
        return QueueCounts(self._backlog, len(self._in_flight), self._dead,
                           self._recorded, self._merged, self._dropped)

    # ---- the worker's side (coroutines; the database work runs in its thread) ----

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._db_thread, fn, *args)

    async def claim(self, limit: int) -> list[HealEntry]:
        """Up to `limit` due entries not already in flight, soonest due first."""
        return await self._run(self._claim, limit)

    async def done(self, entry: HealEntry) -> None:
        """Healed: the row goes, unless a new report merged into it meanwhile."""
        await self._run(self._finish, entry, "done", "")

    async def defer(self, entry: HealEntry, why: str) -> None:
        """Could not finish for a passing reason (a node offline): try again later."""
        await self._run(self._finish, entry, "defer", why)

    async def retry(self, entry: HealEntry, error: str) -> None:
        """Failed: back off exponentially; a dead letter after `max_attempts` failures."""
        await self._run(self._finish, entry, "retry", error)

    async def load_state(self, name: str) -> dict[str, Any] | None:
        def read() -> dict[str, Any] | None:
            assert self._conn is not None
            row = self._conn.execute("SELECT value FROM heal_state WHERE name = ?",
                                     (name,)).fetchone()
            return json.loads(row[0]) if row else None
        return await self._run(read)

    async def save_state(self, name: str, value: dict[str, Any]) -> None:
        def write() -> None:
            assert self._conn is not None
            self._conn.execute("INSERT OR REPLACE INTO heal_state (name, value) VALUES (?, ?)",
                               (name, json.dumps(value)))
        await self._run(write)

    def flush(self) -> None:
        """Write every parked report now (blocking; tests and shutdown)."""
        self._db_thread.submit(self._flush).result()

    def entries(self, *, dead: bool = False) -> list[HealEntry]:
        """Every waiting (or dead) row, oldest first (blocking; inspection and tests)."""
        def read() -> list[HealEntry]:
            self._flush()
            assert self._conn is not None
            rows = self._conn.execute(
                "SELECT bucket, key, version_id, reason, nodes, deep, attempts, defers, "
                "generation, queued_at FROM heal_queue WHERE dead = ? ORDER BY queued_at",
                (int(dead),)).fetchall()
            return [HealEntry(r[0], r[1], r[2], r[3], tuple(json.loads(r[4])), bool(r[5]),
                              r[6], r[7], r[8], r[9]) for r in rows]
        return self._db_thread.submit(read).result()

    def close(self) -> None:
        """Writes what is parked and closes the database."""
        def shut() -> None:
            self._flush()
            if self._conn is not None:
                self._conn.close()
                self._conn = None
        with contextlib.suppress(RuntimeError):
            self._db_thread.submit(shut).result()
        self._db_thread.shutdown(wait=True)
