"""Buckets and object versions in the metadata index: the queries and the write jobs.

Every function takes an open connection; write jobs run inside `MetaStore.write` and return
the file ids that no row references any more (the caller removes them after the commit).
The latest version of a key is the one with the highest version id; `refresh_latest` keeps
the `is_latest` flag (and `superseded_ns`, the collector's clock) true to that after every
change.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from .errors import (
    BucketAlreadyExists,
    BucketNotEmpty,
    InvalidArgument,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
    WriteNotFound,
)
from .records import Geometry, PartRecord, VersionRecord

__all__ = [
    "NewVersion", "commit_version", "delete_bucket", "delete_row", "delete_version",
    "get_bucket_config", "inspect_key", "list_buckets", "list_latest", "make_bucket",
    "put_bucket_config", "read_versions", "require_bucket", "update_meta", "version_for_read",
]

VERSION_COLUMNS = ("bucket, key, version_id, is_latest, delete_marker, mod_time_ns, "
                   "shard_index, data_shards, parity_shards, block_size, shard_block_size, "
                   "hash_algorithm, is_inline, meta")


@dataclass
class NewVersion:
    """What CommitObject asks to store. Parts without a file id were not freshly written:
    they must already be the stored version's (a retried commit)."""

    bucket: str
    key: str
    version_id: str
    delete_marker: bool
    meta: bytes
    shard_index: int
    geometry: Geometry | None
    parts: list[PartRecord]
    inline_shard: bytes | None
    inline_hash: bytes | None
    now_ns: int


# ---- buckets ----

def require_bucket(conn: sqlite3.Connection, bucket: str) -> int:
    row = conn.execute("SELECT created_ns FROM buckets WHERE name = ?", (bucket,)).fetchone()
    if row is None:
        raise NoSuchBucket(f"bucket {bucket!r} does not exist")
    return row[0]


def make_bucket(conn: sqlite3.Connection, bucket: str, now_ns: int) -> None:
    if conn.execute("SELECT 1 FROM buckets WHERE name = ?", (bucket,)).fetchone():
        raise BucketAlreadyExists(f"bucket {bucket!r} already exists")
    conn.execute("INSERT INTO buckets (name, created_ns) VALUES (?, ?)", (bucket, now_ns))


def list_buckets(conn: sqlite3.Connection) -> list[tuple[str, int]]:
    return conn.execute("SELECT name, created_ns FROM buckets ORDER BY name").fetchall()


def delete_bucket(conn: sqlite3.Connection, bucket: str) -> list[str]:
    """Drop an empty bucket (delete markers and superseded versions go with it)."""
    require_bucket(conn, bucket)
    live = conn.execute("SELECT 1 FROM versions WHERE bucket = ? AND is_latest = 1 AND "
                        "delete_marker = 0 LIMIT 1", (bucket,)).fetchone()
    if live:
        raise BucketNotEmpty(f"bucket {bucket!r} is not empty")
    files = [r[0] for r in conn.execute("SELECT file_id FROM parts WHERE bucket = ?", (bucket,))]
    files += [r[0] for r in conn.execute(
        "SELECT p.file_id FROM upload_parts p JOIN uploads u USING (upload_id) "
        "WHERE u.bucket = ?", (bucket,))]
    conn.execute("DELETE FROM upload_parts WHERE upload_id IN "
                 "(SELECT upload_id FROM uploads WHERE bucket = ?)", (bucket,))
    for table in ("uploads", "parts", "versions"):
        conn.execute(f"DELETE FROM {table} WHERE bucket = ?", (bucket,))
    conn.execute("DELETE FROM bucket_config WHERE bucket = ?", (bucket,))
    conn.execute("DELETE FROM buckets WHERE name = ?", (bucket,))
    return files


def put_bucket_config(conn: sqlite3.Connection, bucket: str, name: str, value: bytes) -> None:
    """Set (or with an empty value, delete) one configuration blob of a bucket."""
    require_bucket(conn, bucket)
    if value:
        conn.execute("INSERT OR REPLACE INTO bucket_config (bucket, name, value) "
                     "VALUES (?, ?, ?)", (bucket, name, value))
    else:
        conn.execute("DELETE FROM bucket_config WHERE bucket = ? AND name = ?", (bucket, name))


def get_bucket_config(conn: sqlite3.Connection, bucket: str, name: str) -> bytes | None:
    require_bucket(conn, bucket)
    row = conn.execute("SELECT value FROM bucket_config WHERE bucket = ? AND name = ?",
                       (bucket, name)).fetchone()
    return row[0] if row else None


# ---- reading versions ----

def _geometry(row: tuple) -> Geometry | None:
    if row[0] is None:
        return None
    return Geometry(*row)


def _version(row: tuple) -> VersionRecord:
    return VersionRecord(
        bucket=row[0], key=row[1], version_id=row[2], is_latest=bool(row[3]),
        delete_marker=bool(row[4]), mod_time_ns=row[5], shard_index=row[6],
        geometry=_geometry(row[7:12]), is_inline=bool(row[12]), meta=row[13])


def _parts(conn: sqlite3.Connection, v: VersionRecord) -> list[PartRecord]:
    rows = conn.execute(
        "SELECT part_number, data_id, shard_size, file_id, file_size FROM parts "
        "WHERE bucket = ? AND key = ? AND version_id = ? ORDER BY part_number",
        (v.bucket, v.key, v.version_id))
    return [PartRecord(*r) for r in rows]


def _load_inline(conn: sqlite3.Connection, v: VersionRecord) -> tuple[bytes, bytes]:
    row = conn.execute("SELECT inline_shard, inline_hash FROM versions WHERE bucket = ? AND "
                       "key = ? AND version_id = ?", (v.bucket, v.key, v.version_id)).fetchone()
    return row[0] or b"", row[1] or b""


def read_versions(conn: sqlite3.Connection, bucket: str, key: str, version_id: str,
                  limit: int, with_inline: bool = False) -> list[tuple[VersionRecord, bytes]]:
    """Newest first, with parts; (version, stored inline hash) pairs. NOT_FOUND when none."""
    require_bucket(conn, bucket)
    if version_id:
        rows = conn.execute(f"SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = ? AND "
                            "key = ? AND version_id = ?", (bucket, key, version_id)).fetchall()
        if not rows:
            raise NoSuchVersion(f"version {version_id} of {key!r} is not held here")
    else:
        rows = conn.execute(f"SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = ? AND "
                            "key = ? ORDER BY version_id DESC LIMIT ?",
                            (bucket, key, limit)).fetchall()
        if not rows:
            raise NoSuchKey(f"key {key!r} has no version here")
    out = []
    for row in rows:
        v = _version(row)
        v.parts = _parts(conn, v)
        digest = b""
        if with_inline and v.is_inline:
            v.inline_shard, digest = _load_inline(conn, v)
        out.append((v, digest))
    return out


def version_for_read(conn: sqlite3.Connection, bucket: str, key: str,
                     version_id: str) -> tuple[VersionRecord, bytes]:
    """The version a shard read names (the latest when no id), with inline data loaded."""
    (v, digest), = read_versions(conn, bucket, key, version_id, 1, with_inline=True)
    if v.delete_marker:
        if version_id:
            raise InvalidArgument(f"version {version_id} of {key!r} is a delete marker")
        raise NoSuchKey(f"key {key!r} is deleted (its latest version is a delete marker)")
    return v, digest


def inspect_key(conn: sqlite3.Connection, bucket: str, key: str) -> list[VersionRecord]:
    """Every version of the key, newest first, with parts (empty when the key has none)."""
    require_bucket(conn, bucket)
    rows = conn.execute(f"SELECT {VERSION_COLUMNS} FROM versions WHERE bucket = ? AND key = ? "
                        "ORDER BY version_id DESC", (bucket, key)).fetchall()
    versions = [_version(r) for r in rows]
    for v in versions:
        v.parts = _parts(conn, v)
    return versions


def list_latest(conn: sqlite3.Connection, bucket: str, prefix: str, after: str | None,
                with_markers: bool, limit: int) -> list[VersionRecord]:
    """Latest versions in key byte order: keys > `after` (or >= `prefix`), up to `limit`.

    Keys not starting with `prefix` are not filtered here beyond the lower bound; the caller
    stops at the first one (everything after it is out of the prefix too)."""
    marker = "" if with_markers else "AND delete_marker = 0"
    if after is not None and after >= prefix:
        bound, op = after, ">"
    else:
        bound, op = prefix, ">="
    rows = conn.execute(
        f"SELECT {VERSION_COLUMNS} FROM versions INDEXED BY versions_latest "
        f"WHERE bucket = ? AND is_latest = 1 AND key {op} ? {marker} ORDER BY key LIMIT ?",
        (bucket, bound, limit)).fetchall()
    return [_version(r) for r in rows]


# ---- writing versions ----

def refresh_latest(conn: sqlite3.Connection, bucket: str, key: str, now_ns: int) -> str | None:
    """Flag the highest version id of the key as latest (and only it); returns that id."""
    latest = conn.execute("SELECT MAX(version_id) FROM versions WHERE bucket = ? AND key = ?",
                          (bucket, key)).fetchone()[0]
    if latest is None:
        return None
    conn.execute("UPDATE versions SET is_latest = 0, superseded_ns = ? WHERE bucket = ? AND "
                 "key = ? AND is_latest = 1 AND version_id != ?", (now_ns, bucket, key, latest))
    conn.execute("UPDATE versions SET is_latest = 1, superseded_ns = NULL WHERE bucket = ? AND "
                 "key = ? AND version_id = ? AND is_latest = 0", (bucket, key, latest))
    return latest


def delete_row(conn: sqlite3.Connection, bucket: str, key: str, version_id: str) -> list[str]:
    files = [r[0] for r in conn.execute(
        "SELECT file_id FROM parts WHERE bucket = ? AND key = ? AND version_id = ?",
        (bucket, key, version_id))]
    conn.execute("DELETE FROM parts WHERE bucket = ? AND key = ? AND version_id = ?",
                 (bucket, key, version_id))
    conn.execute("DELETE FROM versions WHERE bucket = ? AND key = ? AND version_id = ?",
                 (bucket, key, version_id))
    return files


def _resolve_parts(conn: sqlite3.Connection, new: NewVersion) -> list[PartRecord]:
    """Parts without a fresh file must match the stored version's parts (a retried commit)."""
    if all(p.file_id for p in new.parts):
        return new.parts
    stored = {p.part_number: p for p in _parts(conn, VersionRecord(
        new.bucket, new.key, new.version_id, False, False, 0, b"", 0, None, False))}
    resolved = []
    for p in new.parts:
        old = stored.get(p.part_number) if not p.file_id else p
        if old is None or (old.data_id, old.shard_size) != (p.data_id, p.shard_size):
            raise WriteNotFound(f"no written shard data for part {p.part_number} "
                                f"(data_id {p.data_id})")
        resolved.append(old)
    return resolved


def commit_version(conn: sqlite3.Connection, new: NewVersion) -> tuple[bool, list[str]]:
    """Store a version (replacing one with the same id); returns (is_latest, obsolete files)."""
    require_bucket(conn, new.bucket)
    parts = _resolve_parts(conn, new)
    keep = {p.file_id for p in parts}
    obsolete = [f for f in delete_row(conn, new.bucket, new.key, new.version_id)
                if f not in keep]
    g = new.geometry
    geometry = ((g.data_shards, g.parity_shards, g.block_size, g.shard_block_size,
                 g.hash_algorithm) if g else (None,) * 5)
    conn.execute(
        "INSERT INTO versions (bucket, key, version_id, is_latest, delete_marker, mod_time_ns, "
        "superseded_ns, shard_index, data_shards, parity_shards, block_size, shard_block_size, "
        "hash_algorithm, is_inline, meta, inline_hash, inline_shard) "
        "VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (new.bucket, new.key, new.version_id, int(new.delete_marker), new.now_ns, new.now_ns,
         new.shard_index, *geometry, int(new.inline_shard is not None), new.meta,
         new.inline_hash, new.inline_shard))
    conn.executemany(
        "INSERT INTO parts (bucket, key, version_id, part_number, data_id, shard_size, "
        "file_id, file_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [(new.bucket, new.key, new.version_id, p.part_number, p.data_id, p.shard_size,
          p.file_id, p.file_size) for p in parts])
    latest = refresh_latest(conn, new.bucket, new.key, new.now_ns)
    return latest == new.version_id, obsolete


def delete_version(conn: sqlite3.Connection, bucket: str, key: str, version_id: str,
                   now_ns: int) -> list[str]:
    """Remove one version; the next highest becomes the latest again."""
    require_bucket(conn, bucket)
    if not conn.execute("SELECT 1 FROM versions WHERE bucket = ? AND key = ? AND "
                        "version_id = ?", (bucket, key, version_id)).fetchone():
        raise NoSuchVersion(f"version {version_id} of {key!r} is not held here")
    files = delete_row(conn, bucket, key, version_id)
    refresh_latest(conn, bucket, key, now_ns)
    return files


def update_meta(conn: sqlite3.Connection, bucket: str, key: str, version_id: str,
                meta: bytes) -> None:
    require_bucket(conn, bucket)
    cur = conn.execute("UPDATE versions SET meta = ? WHERE bucket = ? AND key = ? AND "
                       "version_id = ?", (meta, bucket, key, version_id))
    if cur.rowcount == 0:
        raise NoSuchVersion(f"version {version_id} of {key!r} is not held here")
