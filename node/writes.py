"""Shard writes that finished streaming but are not committed yet, keyed by
(data_id, part_number, shard_index).

The registry lives in memory only: tmp/ is swept at start, so after a restart there is
nothing it could point to, and a commit of such data gets WriteNotFound.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from .records import Geometry

__all__ = ["PendingWrites", "StagedWrite", "WriteKey"]

WriteKey = tuple[str, int, int]  # (data_id, part_number, shard_index)


@dataclass
class StagedWrite:
    """A written, fsynced shard in tmp/ waiting for CommitObject or PutPart."""

    key: WriteKey
    bucket: str
    object_key: str
    upload_id: str
    geometry: Geometry
    file_id: str
    blocks: int
    shard_size: int
    file_size: int
    staged_at: float = field(default_factory=time.monotonic)

    @property
    def data_id(self) -> str:
        return self.key[0]


class PendingWrites:
    """Thread-safe registry of staged writes plus a count of streams still running."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._staged: dict[WriteKey, StagedWrite] = {}
        self._streaming: set[str] = set()  # file ids of streams in progress

    def begin_stream(self, file_id: str) -> None:
        with self._lock:
            self._streaming.add(file_id)

    def end_stream(self, file_id: str) -> None:
        """Idempotent: a stream may end by finishing or by aborting, or both."""
        with self._lock:
            self._streaming.discard(file_id)

    def active_files(self) -> set[str]:
        """File ids being streamed or staged right now (the sweeper must keep them)."""
        with self._lock:
            return self._streaming | {w.file_id for w in self._staged.values()}

    def stage(self, write: StagedWrite) -> StagedWrite | None:
        """Register a finished write; returns the write it replaces (its file is to drop)."""
        with self._lock:
            old = self._staged.get(write.key)
            self._staged[write.key] = write
            return old

    def claim(self, keys: Iterable[WriteKey]) -> dict[WriteKey, StagedWrite]:
        """Take the staged writes among `keys` out of the registry (missing ones are absent)."""
        with self._lock:
            return {k: self._staged.pop(k) for k in keys if k in self._staged}

    def restore(self, writes: Iterable[StagedWrite]) -> list[StagedWrite]:
        """Put claimed writes back after a failed commit; returns those superseded meanwhile."""
        losers = []
        with self._lock:
            for w in writes:
                if w.key in self._staged:
                    losers.append(w)
                else:
                    self._staged[w.key] = w
        return losers

    def drop_data(self, data_id: str) -> list[StagedWrite]:
        """Remove every staged write of `data_id` (AbortWrite)."""
        with self._lock:
            keys = [k for k in self._staged if k[0] == data_id]
            return [self._staged.pop(k) for k in keys]

    def drop_stale(self, older_than: float) -> list[StagedWrite]:
        """Remove writes staged before the monotonic time `older_than`."""
        with self._lock:
            keys = [k for k, w in self._staged.items() if w.staged_at < older_than]
            return [self._staged.pop(k) for k in keys]

    def count(self) -> int:
        with self._lock:
            return len(self._staged) + len(self._streaming)
