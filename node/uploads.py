"""Multipart staging in the metadata index: uploads, their part attempts, and completion.

A part number holds one attempt at a time: PutPart of a new attempt replaces the row and
hands back the old attempt's file for removal. Completion (`take_parts`, run inside the
CommitObject job) moves the named attempts into the version and returns every other file of
the upload as obsolete.
"""

from __future__ import annotations

import sqlite3

from .errors import InvalidArgument, NoSuchPart, NoSuchUpload, WriteNotFound
from .records import Geometry, PartRecord, UploadPartRecord, UploadRecord
from .versions import require_bucket

__all__ = ["abort_upload", "create_upload", "get_upload", "list_parts", "list_uploads",
           "put_part", "take_parts"]

_PART_COLUMNS = ("upload_id, part_number, data_id, shard_index, data_shards, parity_shards, "
                 "block_size, shard_block_size, hash_algorithm, shard_size, file_id, file_size, "
                 "mod_time_ns, meta")


def _part(row: tuple) -> UploadPartRecord:
    return UploadPartRecord(
        upload_id=row[0], part_number=row[1], data_id=row[2], shard_index=row[3],
        geometry=Geometry(*row[4:9]), shard_size=row[9], file_id=row[10], file_size=row[11],
        mod_time_ns=row[12], meta=row[13])


def get_upload(conn: sqlite3.Connection, upload_id: str) -> UploadRecord:
    row = conn.execute("SELECT bucket, key, upload_id, initiated_ns, meta FROM uploads "
                       "WHERE upload_id = ?", (upload_id,)).fetchone()
    if row is None:
        raise NoSuchUpload(f"upload {upload_id!r} does not exist")
    return UploadRecord(*row)


def create_upload(conn: sqlite3.Connection, upload: UploadRecord) -> None:
    """Register an upload; creating the same one again (a retry) is a no-op."""
    require_bucket(conn, upload.bucket)
    row = conn.execute("SELECT bucket, key FROM uploads WHERE upload_id = ?",
                       (upload.upload_id,)).fetchone()
    if row is not None:
        if tuple(row) != (upload.bucket, upload.key):
            raise InvalidArgument(f"upload id {upload.upload_id!r} is used by another key")
        return
    conn.execute("INSERT INTO uploads (upload_id, bucket, key, initiated_ns, meta) "
                 "VALUES (?, ?, ?, ?, ?)", (upload.upload_id, upload.bucket, upload.key,
                                            upload.initiated_ns, upload.meta))


def put_part(conn: sqlite3.Connection, part: UploadPartRecord,
             written_for: tuple[str, str] | None = None) -> list[str]:
    """Stage an attempt as its part number; returns the replaced attempt's file, if any.

    `written_for` is the (bucket, key) the shard was written for, checked against the upload.
    A part without a file id was not freshly written: it must be the staged attempt already
    (a retried PutPart)."""
    upload = get_upload(conn, part.upload_id)
    if written_for is not None and written_for != (upload.bucket, upload.key):
        raise InvalidArgument(f"data {part.data_id} was written for another object")
    old = conn.execute(f"SELECT {_PART_COLUMNS} FROM upload_parts WHERE upload_id = ? AND "
                       "part_number = ?", (part.upload_id, part.part_number)).fetchone()
    old_part = _part(old) if old else None
    if not part.file_id:
        if old_part is None or old_part.data_id != part.data_id:
            raise WriteNotFound(f"no written shard data for part {part.part_number} "
                                f"(data_id {part.data_id})")
        return []
    g = part.geometry
    conn.execute(
        f"INSERT OR REPLACE INTO upload_parts ({_PART_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (part.upload_id, part.part_number, part.data_id, part.shard_index, g.data_shards,
         g.parity_shards, g.block_size, g.shard_block_size, g.hash_algorithm,
         part.shard_size, part.file_id, part.file_size, part.mod_time_ns, part.meta))
    if old_part and old_part.file_id != part.file_id:
        return [old_part.file_id]
    return []


def list_parts(conn: sqlite3.Connection, upload_id: str, marker: int,
               limit: int) -> list[UploadPartRecord]:
    get_upload(conn, upload_id)
    rows = conn.execute(f"SELECT {_PART_COLUMNS} FROM upload_parts WHERE upload_id = ? AND "
                        "part_number > ? ORDER BY part_number LIMIT ?",
                        (upload_id, marker, limit or -1))
    return [_part(r) for r in rows]


def list_uploads(conn: sqlite3.Connection, bucket: str, prefix: str, key_marker: str,
                 upload_id_marker: str, limit: int) -> list[UploadRecord]:
    """Up to `limit` (0 = all) uploads under `prefix` by (key, upload id) after the markers,
    S3's rule: after (key marker, upload id marker), or past the key marker when there is no
    upload id marker. The index is entered at the markers, so a page costs O(limit)."""
    require_bucket(conn, bucket)
    if key_marker < prefix:
        after, args = "key >= ?", (prefix,)
    elif upload_id_marker:
        after, args = "(key, upload_id) > (?, ?)", (key_marker, upload_id_marker)
    else:
        after, args = "key > ?", (key_marker,)
    rows = conn.execute(
        "SELECT bucket, key, upload_id, initiated_ns, meta FROM uploads INDEXED BY uploads_key "
        f"WHERE bucket = ? AND {after} ORDER BY key, upload_id LIMIT ?",
        (bucket, *args, limit or -1))
    out = []
    for row in rows:
        if not row[1].startswith(prefix):
            break
        out.append(UploadRecord(*row))
    return out


def _upload_files(conn: sqlite3.Connection, upload_id: str) -> list[str]:
    return [r[0] for r in conn.execute("SELECT file_id FROM upload_parts WHERE upload_id = ?",
                                       (upload_id,))]


def _drop_upload(conn: sqlite3.Connection, upload_id: str) -> None:
    conn.execute("DELETE FROM upload_parts WHERE upload_id = ?", (upload_id,))
    conn.execute("DELETE FROM uploads WHERE upload_id = ?", (upload_id,))


def abort_upload(conn: sqlite3.Connection, upload_id: str) -> list[str]:
    get_upload(conn, upload_id)
    files = _upload_files(conn, upload_id)
    _drop_upload(conn, upload_id)
    return files


def take_parts(conn: sqlite3.Connection, upload_id: str, bucket: str, key: str,
               shard_index: int, geometry: Geometry | None,
               wanted: list[tuple[int, str, int]]) -> tuple[list[PartRecord], list[str]]:
    """Complete an upload: (the named attempts as version parts, the other files to drop).

    `wanted` holds (part_number, data_id, shard_size) per part, as CommitObject names them.
    """
    upload = get_upload(conn, upload_id)
    if (upload.bucket, upload.key) != (bucket, key):
        raise InvalidArgument(f"upload {upload_id!r} belongs to another key")
    staged = {p.part_number: p for p in
              (_part(r) for r in conn.execute(f"SELECT {_PART_COLUMNS} FROM upload_parts "
                                              "WHERE upload_id = ?", (upload_id,)))}
    parts = []
    for number, data_id, shard_size in wanted:
        p = staged.get(number)
        if p is None or p.data_id != data_id:
            raise NoSuchPart(f"part {number} (data_id {data_id}) is not staged in the upload")
        if p.shard_size != shard_size:
            raise InvalidArgument(f"part {number}: shard_size {shard_size}, staged "
                                  f"{p.shard_size}")
        if p.shard_index != shard_index or p.geometry != geometry:
            raise InvalidArgument(f"part {number} was written with another shard index or "
                                  "geometry")
        parts.append(PartRecord(number, data_id, p.shard_size, p.file_id, p.file_size))
    used = {p.file_id for p in parts}
    obsolete = [f for f in _upload_files(conn, upload_id) if f not in used]
    _drop_upload(conn, upload_id)
    return parts, obsolete
