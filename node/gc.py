"""Background collection: superseded versions, lone delete markers, stale temporary writes,
and orphaned shard files (left by a crash between a rename and its metadata commit).

Superseded versions are kept for `version_grace` seconds after they stop being the latest, so
that a reader streaming one is not cut off and a rollback (DeleteVersion of the newer one) can
make it the latest again.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
import time
from dataclasses import dataclass

from .config import NodeConfig
from .metastore import MetaStore
from .shardstore import ShardStore
from .versions import delete_row
from .writes import PendingWrites

__all__ = ["Collector", "CollectorStats"]

log = logging.getLogger("node.gc")

_BATCH = 500  # versions removed per transaction
ORPHAN_SCAN_INTERVAL = 6 * 3600.0


@dataclass(frozen=True)
class CollectorStats:
    versions: int = 0
    markers: int = 0
    stale_writes: int = 0
    tmp_files: int = 0
    orphans: int = 0


def _collect_superseded(conn: sqlite3.Connection, cutoff_ns: int) -> tuple[int, list[str]]:
    rows = conn.execute("SELECT bucket, key, version_id FROM versions INDEXED BY "
                        "versions_superseded WHERE superseded_ns IS NOT NULL AND "
                        "superseded_ns < ? LIMIT ?", (cutoff_ns, _BATCH)).fetchall()
    files: list[str] = []
    for bucket, key, version_id in rows:
        files += delete_row(conn, bucket, key, version_id)
    return len(rows), files


def _collect_markers(conn: sqlite3.Connection, cutoff_ns: int) -> tuple[int, list[str]]:
    """Delete markers that are all that is left of their key."""
    rows = conn.execute("SELECT bucket, key, version_id FROM versions INDEXED BY "
                        "versions_markers WHERE is_latest = 1 AND delete_marker = 1 AND "
                        "mod_time_ns < ? LIMIT ?", (cutoff_ns, _BATCH)).fetchall()
    removed = 0
    for bucket, key, version_id in rows:
        count = conn.execute("SELECT COUNT(*) FROM versions WHERE bucket = ? AND key = ?",
                             (bucket, key)).fetchone()[0]
        if count == 1:
            delete_row(conn, bucket, key, version_id)
            removed += 1
    return removed, []


def _referenced(conn: sqlite3.Connection, low: str, high: str) -> set[str]:
    rows = conn.execute("SELECT file_id FROM parts WHERE file_id >= ? AND file_id < ? UNION "
                        "SELECT file_id FROM upload_parts WHERE file_id >= ? AND file_id < ?",
                        (low, high, low, high))
    return {r[0] for r in rows}


class Collector:
    """A daemon thread running `collect` every `gc_interval` seconds."""

    def __init__(self, config: NodeConfig, meta: MetaStore, shards: ShardStore,
                 writes: PendingWrites):
        self.config = config
        self.meta = meta
        self.shards = shards
        self.writes = writes
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_orphan_scan = 0.0

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="collector", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                stats = self.collect()
                if any(vars(stats).values()):
                    log.info("collected: %s", stats)
            except Exception:
                log.exception("background collection failed; retrying next round")
            self._stop.wait(self.config.gc_interval)

    def collect(self) -> CollectorStats:
        now_ns = time.time_ns()
        versions = self._drain(_collect_superseded, now_ns - int(self.config.version_grace * 1e9))
        markers = self._drain(_collect_markers, now_ns - int(self.config.marker_grace * 1e9))
        stale, tmp = self.sweep_stale_writes()
        orphans = 0
        if time.monotonic() >= self._next_orphan_scan:
            orphans = self.sweep_orphans()
            self._next_orphan_scan = time.monotonic() + ORPHAN_SCAN_INTERVAL
        return CollectorStats(versions, markers, stale, tmp, orphans)

    def _drain(self, job, cutoff_ns: int) -> int:
        total = 0
        while not self._stop.is_set():
            count, files = self.meta.write(lambda c: job(c, cutoff_ns))
            self.shards.delete(files)
            total += count
            if count < _BATCH:
                break
        return total

    def sweep_stale_writes(self) -> tuple[int, int]:
        """Drop writes never committed within tmp_grace, and tmp/ files nobody owns."""
        stale = self.writes.drop_stale(time.monotonic() - self.config.tmp_grace)
        self.shards.discard_tmp(w.file_id for w in stale)
        active = self.writes.active_files()
        cutoff = time.time() - self.config.tmp_grace
        leaked = [f for f, mtime in self.shards.tmp_files() if f not in active and mtime < cutoff]
        self.shards.discard_tmp(leaked)
        return len(stale), len(leaked)

    def sweep_orphans(self) -> int:
        """Remove files in shards/ that no metadata row references."""
        removed = 0
        for i in range(256):
            if self._stop.is_set():
                break
            low = f"{i:02x}"
            names = self.shards.shard_files(low)
            if not names:
                continue
            high = f"{i + 1:02x}" if i < 255 else "g"
            referenced = self.meta.read(lambda c, lo=low, hi=high: _referenced(c, lo, hi))
            for file_id in set(names) - referenced:
                removed += self._remove_orphan(file_id)
        return removed

    def _remove_orphan(self, file_id: str) -> int:
        # Re-check under the store's lock: a commit may have promoted the file meanwhile.
        with self.shards.locked():
            if self.shards.is_promoting_locked(file_id):
                return 0
            if self.meta.read(lambda c: _referenced(c, file_id, file_id + "\0")):
                return 0
            with contextlib.suppress(FileNotFoundError):
                self.shards.shard_path(file_id).unlink()
                return 1
        return 0
