"""Shard files on disk: temporary writes, commit by rename, verified block reads, sweeping.

Layout under the data directory (file ids are random hex chosen by the node; no client
string ever becomes a path):

    tmp/<file_id>             a shard being written, or written and not yet committed
    shards/<id[:2]>/<file_id> a committed shard file

A shard file is `[hash | block]*`: block i starts at i * (hash_len + shard_block_size), so a
range read seeks straight to it; the last block may be short. Writes go to tmp/, are fsynced,
and are renamed into shards/ by `promote` (then the parent directory is fsynced) just before
the metadata transaction that references them. Everything in tmp/ is swept at start.

Shard data bypasses the page cache (O_DIRECT, `direct_io.py`) where the file system allows it:
on this kind of machine buffered shard I/O cost more kernel CPU than the whole rest of a node.
"""

from __future__ import annotations

import contextlib
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from common import bitrot

from .direct_io import DirectAppender, direct_io_supported, open_direct, pread_direct
from .errors import Corrupt, InvalidArgument
from .records import BlockLayout

__all__ = ["ShardReader", "ShardStore", "ShardWriter"]

_OPEN_NEW = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, parts: list[bytes]) -> int:
    total = sum(len(p) for p in parts)
    done = os.writev(fd, parts)
    if done < total:  # a short write (rare on regular files): finish it byte-exactly
        rest = b"".join(parts)[done:]
        while rest:
            rest = rest[os.write(fd, rest):]
    return total


class ShardWriter:
    """Writes one shard to a temporary file, checking every block's hash and size."""

    def __init__(self, path: Path, file_id: str, algorithm: int, shard_block_size: int,
                 direct: bool = False):
        self.path = path
        self.file_id = file_id
        self.algorithm = algorithm
        self.shard_block_size = shard_block_size
        self.blocks = 0
        self.bytes = 0
        self.file_size = 0
        self._short_seen = False
        if direct:
            self._fd: int | None = open_direct(path, _OPEN_NEW)
            self._out: DirectAppender | None = DirectAppender(self._fd)
        else:
            self._fd = os.open(path, _OPEN_NEW, 0o600)
            self._out = None

    def write_block(self, data: bytes, digest: bytes) -> None:
        """Append one block; InvalidArgument (nothing appended) if its size or hash is wrong."""
        size = len(data)
        if self._short_seen:
            raise InvalidArgument(f"block {self.blocks}: only the last block may be short")
        if size == 0 or size > self.shard_block_size:
            raise InvalidArgument(f"block {self.blocks}: {size} bytes, shard_block_size is "
                                  f"{self.shard_block_size}")
        if digest != bitrot.block_hash(self.algorithm, data):
            raise InvalidArgument(f"block {self.blocks}: hash mismatch")
        assert self._fd is not None
        if self._out is not None:
            self._out.append(digest)
            self._out.append(data)
            self.file_size += len(digest) + size
        else:
            self.file_size += _write_all(self._fd, [digest, data])
        self._short_seen = size < self.shard_block_size
        self.blocks += 1
        self.bytes += size

    def finish(self) -> None:
        """Make the written data durable (fsync) and close the file."""
        assert self._fd is not None
        fd, self._fd = self._fd, None
        try:
            if self._out is not None:
                self._out.close_tail()
                self._out.release()
            os.fsync(fd)
        finally:
            os.close(fd)

    def abort(self) -> None:
        """Close and remove the temporary file (safe to call more than once)."""
        if self._out is not None:
            self._out.release()
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


class ShardReader:
    """Reads verified blocks of one shard file; a bad or short block raises Corrupt."""

    def __init__(self, path: Path, layout: BlockLayout, algorithm: int, direct: bool = False):
        self.layout = layout
        self.algorithm = algorithm
        flags = os.O_RDONLY | os.O_CLOEXEC
        self._fd = open_direct(path, flags) if direct else os.open(path, flags)
        self._direct = direct
        self.file_size = os.fstat(self._fd).st_size

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ShardReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _pread(self, length: int, offset: int) -> bytes | memoryview:
        if self._direct:
            return pread_direct(self._fd, length, offset)
        return os.pread(self._fd, length, offset)

    def read_block(self, block: int) -> tuple[bytes | memoryview, bytes]:
        """(data, hash) of block `block`, after checking the hash. The data is a memoryview
        of a fresh buffer when read with O_DIRECT."""
        return self.read_run(block, 1)[0]

    def read_run(self, first: int, count: int) -> list[tuple[bytes | memoryview, bytes]]:
        """(data, hash) of blocks [first, first + count), read with one call and each checked
        against its hash. A bad or short block ends the run early (the good blocks before it
        are returned) or, when it is the first, raises Corrupt."""
        layout = self.layout
        start = layout.offset(first)
        records = layout.offset(first + count - 1) + layout.hash_len + \
            layout.data_len(first + count - 1) - start
        raw = self._pread(records, start)
        out = []
        for block in range(first, first + count):
            at = layout.offset(block) - start
            want = layout.data_len(block)
            digest = bytes(raw[at : at + layout.hash_len])
            data = raw[at + layout.hash_len : at + layout.hash_len + want]
            problem = ""
            if len(digest) != layout.hash_len or len(data) != want:
                problem = "shard file is short"
            elif bitrot.block_hash(self.algorithm, data) != digest:
                problem = "hash mismatch"
            if problem and out:
                return out
            if problem:
                raise Corrupt(f"block {block}: {problem}")
            out.append((data, digest))
        return out

    def read_hash(self, block: int) -> bytes:
        return bytes(self._pread(self.layout.hash_len, self.layout.offset(block)))

    def blocks(self, start: int, count: int) -> Iterator[tuple[bytes | memoryview, bytes]]:
        for run in self.runs(start, count, 1):
            yield from run

    def runs(self, start: int, count: int,
             per_run: int) -> Iterator[list[tuple[bytes | memoryview, bytes]]]:
        """Blocks [start, start + count) (count 0: to the end), `per_run` per read."""
        end = self.layout.blocks if count == 0 else min(self.layout.blocks, start + count)
        block = start
        while block < end:
            run = self.read_run(block, min(per_run, end - block))
            yield run
            block += len(run)

    def bad_blocks(self) -> list[int]:
        """Every block that fails its hash or lies (partly) beyond the end of the file."""
        bad = []
        for block in range(self.layout.blocks):
            try:
                self.read_block(block)
            except Corrupt:
                bad.append(block)
        last = self.layout.blocks - 1
        if self.file_size > self.layout.file_size and last >= 0 and last not in bad:
            bad.append(last)  # trailing bytes: the file is not what was committed
        return bad


class ShardStore:
    """The shard files of one data directory."""

    def __init__(self, root: Path, direct_io: bool = True):
        self.root = root
        self.tmp = root / "tmp"
        self.shards = root / "shards"
        self.direct_io = direct_io  # asked for; `prepare` keeps it only if the disk takes it
        self._promoting: set[str] = set()
        self._lock = threading.Lock()

    def prepare(self) -> None:
        """Create the directories (all 256 shard dirs up front, so a commit never has to)."""
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.shards.mkdir(exist_ok=True)
        for i in range(256):
            (self.shards / f"{i:02x}").mkdir(exist_ok=True)
        _fsync_dir(self.shards)
        _fsync_dir(self.root)
        self.direct_io = self.direct_io and direct_io_supported(self.tmp)

    # ---- paths ----

    def tmp_path(self, file_id: str) -> Path:
        return self.tmp / file_id

    def shard_path(self, file_id: str) -> Path:
        return self.shards / file_id[:2] / file_id

    def relative_path(self, file_id: str) -> str:
        return f"shards/{file_id[:2]}/{file_id}"

    # ---- writing ----

    def new_writer(self, algorithm: int, shard_block_size: int) -> ShardWriter:
        file_id = uuid.uuid4().hex
        return ShardWriter(self.tmp_path(file_id), file_id, algorithm, shard_block_size,
                           self.direct_io)

    def promote(self, file_ids: Iterable[str]) -> list[str]:
        """Move written files from tmp/ into shards/ and make the renames durable.

        The files stay marked as promoting (the orphan scan leaves them alone) until
        `settle` is called after the metadata transaction, whatever its outcome."""
        moved: list[str] = []
        ids = list(file_ids)
        with self._lock:
            self._promoting.update(ids)
        try:
            for file_id in ids:
                os.rename(self.tmp_path(file_id), self.shard_path(file_id))
                moved.append(file_id)
            for directory in {self.shard_path(f).parent for f in ids}:
                _fsync_dir(directory)
        except BaseException:
            self.demote(moved)
            self.settle(ids)
            raise
        return moved

    def demote(self, file_ids: Iterable[str]) -> None:
        """Undo `promote` (the metadata transaction failed): back to tmp/, or gone."""
        for file_id in file_ids:
            try:
                os.rename(self.shard_path(file_id), self.tmp_path(file_id))
            except OSError:
                with contextlib.suppress(FileNotFoundError):
                    self.shard_path(file_id).unlink()

    def settle(self, file_ids: Iterable[str]) -> None:
        with self._lock:
            self._promoting.difference_update(file_ids)

    def locked(self) -> threading.Lock:
        """Hold to keep `promote` from starting while a file's fate is decided."""
        return self._lock

    def is_promoting_locked(self, file_id: str) -> bool:
        return file_id in self._promoting

    # ---- reading ----

    def open_reader(self, file_id: str, layout: BlockLayout, algorithm: int) -> ShardReader:
        """Raises FileNotFoundError when the file is gone."""
        return ShardReader(self.shard_path(file_id), layout, algorithm, self.direct_io)

    def file_size(self, file_id: str) -> int | None:
        try:
            return self.shard_path(file_id).stat().st_size
        except FileNotFoundError:
            return None

    # ---- removal and sweeping ----

    def delete(self, file_ids: Iterable[str]) -> None:
        """Remove committed files no metadata references any more (missing ones are fine)."""
        for file_id in file_ids:
            with contextlib.suppress(FileNotFoundError):
                self.shard_path(file_id).unlink()

    def discard_tmp(self, file_ids: Iterable[str]) -> None:
        for file_id in file_ids:
            with contextlib.suppress(FileNotFoundError):
                self.tmp_path(file_id).unlink()

    def sweep_tmp(self) -> int:
        """Remove everything in tmp/ (at start: no write of a previous run can be committed)."""
        count = 0
        for entry in os.scandir(self.tmp):
            with contextlib.suppress(FileNotFoundError, IsADirectoryError):
                os.unlink(entry.path)
                count += 1
        return count

    def tmp_files(self) -> list[tuple[str, float]]:
        """(file_id, mtime) of every temporary file."""
        out = []
        for entry in os.scandir(self.tmp):
            with contextlib.suppress(FileNotFoundError):
                out.append((entry.name, entry.stat().st_mtime))
        return out

    def shard_files(self, prefix: str) -> list[str]:
        """File ids of the committed files in shards/<prefix>/."""
        try:
            return [e.name for e in os.scandir(self.shards / prefix)]
        except FileNotFoundError:
            return []

    def disk_usage(self) -> tuple[int, int]:
        """(total, free) bytes of the file system holding the data directory."""
        st = os.statvfs(self.root)
        return st.f_blocks * st.f_frsize, st.f_bavail * st.f_frsize
