"""The SQLite metadata index: schema, read snapshots, and one writer at a time that
group-commits.

Every change is a job `fn(conn) -> result` run by `MetaStore.write`. The jobs waiting together
run inside one transaction, each under its own SAVEPOINT: a job that raises a NodeError is
rolled back alone, the others commit, and every caller gets its answer only after the COMMIT
(and its fsync, synchronous=FULL) returned. A job is therefore atomic and durable on its own,
and a burst of small commits costs one fsync instead of one each. If the transaction itself
fails (disk full, I/O error), each job of the batch is retried in a transaction of its own so
that one failure never fails a neighbour.

There is no writer thread: the first caller that finds no batch running becomes the leader
and runs the waiting jobs (its own among them) on its own thread; callers arriving meanwhile
wait and the next of them leads the following batch. An uncontended commit thus costs no
thread hand-off (each one cost two context switches, which are dear on this kind of machine).

Readers use one connection per thread (WAL: they never wait for the writer). No SQLite call
ever runs on an event loop.
"""

from __future__ import annotations

import contextlib
import logging
import sqlite3
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import TypeVar

from .errors import NodeError

__all__ = ["MetaStore"]

T = TypeVar("T")
log = logging.getLogger("node.metastore")

SCHEMA_VERSION = 1
_MAX_BATCH = 256

SCHEMA = """
CREATE TABLE IF NOT EXISTS buckets (
    name TEXT PRIMARY KEY,
    created_ns INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS bucket_config (
    bucket TEXT NOT NULL,
    name TEXT NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (bucket, name)
) WITHOUT ROWID;
-- One row per version a node holds. Large blobs last: reading the small columns of a row
-- never touches the overflow pages of its inline shard.
CREATE TABLE IF NOT EXISTS versions (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version_id TEXT NOT NULL,
    is_latest INTEGER NOT NULL,
    delete_marker INTEGER NOT NULL,
    mod_time_ns INTEGER NOT NULL,
    superseded_ns INTEGER,  -- since when it is not the latest; NULL while it is
    shard_index INTEGER NOT NULL,
    data_shards INTEGER,
    parity_shards INTEGER,
    block_size INTEGER,
    shard_block_size INTEGER,
    hash_algorithm INTEGER,
    is_inline INTEGER NOT NULL,
    meta BLOB NOT NULL,
    inline_hash BLOB,
    inline_shard BLOB,
    PRIMARY KEY (bucket, key, version_id)
);
CREATE INDEX IF NOT EXISTS versions_latest
    ON versions (bucket, key, delete_marker) WHERE is_latest = 1;
CREATE INDEX IF NOT EXISTS versions_superseded
    ON versions (superseded_ns) WHERE superseded_ns IS NOT NULL;
CREATE INDEX IF NOT EXISTS versions_markers
    ON versions (mod_time_ns) WHERE is_latest = 1 AND delete_marker = 1;
CREATE TABLE IF NOT EXISTS parts (
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    version_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    data_id TEXT NOT NULL,
    shard_size INTEGER NOT NULL,
    file_id TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    PRIMARY KEY (bucket, key, version_id, part_number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS parts_file ON parts (file_id);
CREATE TABLE IF NOT EXISTS uploads (
    upload_id TEXT PRIMARY KEY,
    bucket TEXT NOT NULL,
    key TEXT NOT NULL,
    initiated_ns INTEGER NOT NULL,
    meta BLOB NOT NULL
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS uploads_key ON uploads (bucket, key, upload_id);
CREATE TABLE IF NOT EXISTS upload_parts (
    upload_id TEXT NOT NULL,
    part_number INTEGER NOT NULL,
    data_id TEXT NOT NULL,
    shard_index INTEGER NOT NULL,
    data_shards INTEGER NOT NULL,
    parity_shards INTEGER NOT NULL,
    block_size INTEGER NOT NULL,
    shard_block_size INTEGER NOT NULL,
    hash_algorithm INTEGER NOT NULL,
    shard_size INTEGER NOT NULL,
    file_id TEXT NOT NULL,
    file_size INTEGER NOT NULL,
    mod_time_ns INTEGER NOT NULL,
    meta BLOB NOT NULL,
    PRIMARY KEY (upload_id, part_number)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS upload_parts_file ON upload_parts (file_id);
"""


def _connect(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=60)
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA busy_timeout = 60000")
    conn.execute("PRAGMA journal_size_limit = 67108864")  # shrink the WAL after checkpoints
    return conn


class MetaStore:
    """The metadata database of one data directory."""

    def __init__(self, path: Path):
        self.path = path
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._readers_lock = threading.Lock()
        self._writer: sqlite3.Connection | None = None
        self._pending: list[tuple[Callable, Future]] = []  # jobs no batch has taken yet
        self._leading = False  # a caller is running a batch
        self._turn = threading.Condition()  # guards both

    def open(self) -> None:
        """Create or upgrade the schema; writes may start."""
        conn = _connect(self.path)
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if mode.lower() != "wal":
            raise sqlite3.OperationalError(f"cannot enable WAL journal (got {mode})")
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise sqlite3.DatabaseError(f"metadata schema {version} is newer than this node")
        conn.executescript(f"BEGIN; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;")
        self._writer = conn

    def close(self) -> None:
        with self._turn:
            while self._leading:  # let a running batch finish
                self._turn.wait()
            writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        with self._readers_lock:
            for conn in self._readers:
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
            self._readers.clear()

    # ---- reading ----

    def _reader(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = _connect(self.path)
            conn.execute("PRAGMA query_only = 1")
            self._local.conn = conn
            with self._readers_lock:
                self._readers.append(conn)
        return conn

    @contextlib.contextmanager
    def snapshot(self) -> Iterator[sqlite3.Connection]:
        """A read transaction: every query inside sees the same committed state."""
        conn = self._reader()
        conn.execute("BEGIN")
        try:
            yield conn
        finally:
            conn.execute("COMMIT")

    def read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        with self.snapshot() as conn:
            return fn(conn)

    # ---- writing ----

    def write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run `fn` atomically (in some batch); its result once durably committed."""
        future: Future = Future()
        with self._turn:
            if self._writer is None:
                raise RuntimeError("metastore is not open")
            self._pending.append((fn, future))
        while True:
            with self._turn:
                while self._leading and not future.done():
                    self._turn.wait()
                if future.done():
                    return future.result()
                if self._writer is None:
                    raise RuntimeError("metastore is closed")
                self._leading = True
                batch = self._pending[:_MAX_BATCH]
                del self._pending[:_MAX_BATCH]
            try:
                self._run_batch(batch)
            finally:
                with self._turn:
                    self._leading = False
                    self._turn.notify_all()

    def _run_batch(self, batch: list) -> None:
        conn = self._writer
        assert conn is not None
        outcomes = []
        try:
            conn.execute("BEGIN IMMEDIATE")
            for fn, future in batch:
                outcomes.append((future, *self._run_job(conn, fn)))
            conn.execute("COMMIT")
        except BaseException as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if len(batch) > 1:
                for job in batch:
                    self._run_batch([job])
            else:
                batch[0][1].set_exception(exc)
            return
        for future, result, error in outcomes:
            if error is None:
                future.set_result(result)
            else:
                future.set_exception(error)

    @staticmethod
    def _run_job(conn: sqlite3.Connection, fn: Callable) -> tuple[object, NodeError | None]:
        conn.execute("SAVEPOINT job")
        try:
            result = fn(conn)
        except NodeError as exc:
            conn.execute("ROLLBACK TO job")
            conn.execute("RELEASE job")
            return None, exc
        conn.execute("RELEASE job")
        return result, None
