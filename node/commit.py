"""The commit protocol shared by CommitObject and PutPart: promote the staged shard files,
run the metadata job, undo the renames if it fails, then drop the files it made obsolete.

Order matters for crash safety: the files are renamed into shards/ (and the directory
fsynced) before the transaction that references them commits, so a committed row never
points at a missing file. A crash between the two leaves an unreferenced file in shards/,
which the orphan scan removes; the previous state stays intact and readable.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from typing import TypeVar

from .metastore import MetaStore
from .shardstore import ShardStore
from .writes import PendingWrites, StagedWrite

__all__ = ["commit_with_files", "restore_staged"]

T = TypeVar("T")


def restore_staged(writes: PendingWrites, shards: ShardStore,
                   staged: Iterable[StagedWrite]) -> None:
    """Give claimed writes back (so a retry can commit them); drop any superseded meanwhile."""
    losers = writes.restore(staged)
    shards.discard_tmp(w.file_id for w in losers)


def commit_with_files(meta: MetaStore, shards: ShardStore, writes: PendingWrites,
                      staged: list[StagedWrite],
                      job: Callable[[sqlite3.Connection], tuple[T, list[str]]]) -> T:
    """Make `staged` files permanent together with the metadata change of `job`.

    `job` returns (result, obsolete file ids); on any failure the staged writes are back in
    tmp/ and in the registry, and nothing else changed."""
    file_ids = [w.file_id for w in staged]
    try:
        shards.promote(file_ids)
    except BaseException:
        restore_staged(writes, shards, staged)
        raise
    try:
        result, obsolete = meta.write(job)
    except BaseException:
        shards.demote(file_ids)
        restore_staged(writes, shards, staged)
        raise
    finally:
        shards.settle(file_ids)
    shards.delete(obsolete)
    return result
