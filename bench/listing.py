"""Bucket listing through a real gateway over a real 6-node cluster (EC 4+2, mTLS).

One bucket of small objects (written with a bounded number of concurrent PUTs), then
ListObjectsV2 of the whole bucket in pages of 1000, of one prefix, and with a delimiter:
keys/s, CPU seconds per 1000 keys of the gateway and of the nodes together, beside the limit
of this machine measured in the same run: one core reading the same number of rows from a
SQLite index shaped like a node's (every node of the set must read each key once).
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

from bench._cluster import on_one_gateway_cluster
from bench._s3client import S3Connection
from bench.gateway import _cpu_seconds

__all__ = ["run"]

KEYS = int(os.environ.get("TESSERA_BENCH_LIST_KEYS", "5000"))
DIRS = 10
CLIENTS = 16
_TOKEN = re.compile(rb"<NextContinuationToken>([^<]+)</NextContinuationToken>")
_KEY = re.compile(rb"<Key>")
_PREFIX = re.compile(rb"<CommonPrefixes>")


def _sqlite_rows_per_second(rows: int) -> float:
    """One core scanning `rows` latest-version rows (key, ids, a 500-byte blob) in key order."""
    with tempfile.TemporaryDirectory(prefix="tessera-bench-sqlite-") as tmp:
        conn = sqlite3.connect(Path(tmp, "meta.db"))
        conn.execute("CREATE TABLE v (bucket TEXT, key TEXT, version_id TEXT, is_latest INT, "
                     "delete_marker INT, meta BLOB, PRIMARY KEY (bucket, key, version_id))")
        conn.execute("CREATE INDEX v_latest ON v (bucket, key, delete_marker) "
                     "WHERE is_latest = 1")
        blob = os.urandom(500)
        conn.executemany("INSERT INTO v VALUES ('b', ?, ?, 1, 0, ?)",
                         ((f"dir{i % DIRS}/obj-{i:06d}", f"{i:032x}", blob)
                          for i in range(rows)))
        conn.commit()
        best = float("inf")
        for _ in range(3):
            started = time.perf_counter()
            after, seen = "", 0
            while True:
                page = conn.execute("SELECT * FROM v INDEXED BY v_latest WHERE bucket = 'b' "
                                    "AND is_latest = 1 AND key > ? ORDER BY key LIMIT 1000",
                                    (after,)).fetchall()
                seen += len(page)
                if len(page) < 1000:
                    break
                after = page[-1][1]
            best = min(best, time.perf_counter() - started)
        conn.close()
        return seen / best


def _query(**args: str) -> str:
    return "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}"
                    for k, v in sorted(args.items()))


async def _fill(conns: list[S3Connection], bucket: str) -> None:
    await conns[0].request("PUT", bucket)
    pending = iter(range(KEYS))
    body = memoryview(b"x" * 100)

    async def worker(conn: S3Connection) -> None:
        for i in pending:
            await conn.request("PUT", bucket, f"dir{i % DIRS}/obj-{i:06d}", body=body)

    await asyncio.gather(*(worker(c) for c in conns))


async def _list(conn: S3Connection, bucket: str, **args: str) -> tuple[int, int]:
    """(keys, common prefixes) of a whole ListObjectsV2 walk, in pages of 1000."""
    keys = prefixes = 0
    token = None
    while True:
        query = dict(args, **{"list-type": "2", "max-keys": "1000"})
        if token:
            query["continuation-token"] = token
        _, body, _ = await conn.request("GET", bucket, query=_query(**query))
        keys += len(_KEY.findall(body))
        prefixes += len(_PREFIX.findall(body))
        found = _TOKEN.search(body)
        if found is None:
            return keys, prefixes
        token = found.group(1).decode()


async def _measure(cluster) -> list[dict]:
    gateway = cluster.by_role("gateway")[0]
    host, port = gateway.address.rsplit(":", 1)
    access, secret = cluster.credentials
    node_pids = [r.pid for r in cluster.by_role("node")]
    conns = [S3Connection(host, int(port), access, secret) for _ in range(CLIENTS)]
    started = time.perf_counter()
    await _fill(conns, "listing")
    put_rate = KEYS / (time.perf_counter() - started)
    limit = _sqlite_rows_per_second(KEYS)
    rows = []
    cases = (("whole bucket", {}), ("one prefix", {"prefix": "dir3/"}),
             ("delimiter /", {"delimiter": "/"}),
             ("prefix + delimiter", {"prefix": "dir3/", "delimiter": "/"}))
    for name, args in cases:
        for _ in range(2):  # the first walk warms caches; the second is reported
            cpu_gw, cpu_nodes = _cpu_seconds(gateway.pid), sum(map(_cpu_seconds, node_pids))
            t0 = time.perf_counter()
            keys, prefixes = await _list(conns[0], "listing", **args)
            elapsed = time.perf_counter() - t0
            cpu_gw = _cpu_seconds(gateway.pid) - cpu_gw
            cpu_nodes = sum(map(_cpu_seconds, node_pids)) - cpu_nodes
        entries = max(keys + prefixes, 1)
        rows.append({
            "listing": name, "keys": keys, "prefixes": prefixes, "seconds": elapsed,
            "entries/s": entries / elapsed, "gw CPU s/1000": 1000 * cpu_gw / entries,
            "nodes CPU s/1000": 1000 * cpu_nodes / entries,
            "x 1-core SQLite scan": entries / elapsed / limit,
            "PUT op/s (setup)": put_rate,
        })
    for c in conns:
        await c.close()
    return rows


def run() -> list[dict]:
    return on_one_gateway_cluster(_measure)


if __name__ == "__main__":
    from bench.__main__ import format_table

    print(format_table(run()))
