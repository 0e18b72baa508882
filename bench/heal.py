"""Healing a wiped node: a local 6-node cluster (EC 4+2, mTLS), objects of three sizes, one
node's data directory emptied and the node restarted, then one full heal pass in-process
(what `python -m cluster heal` runs). Reported as objects/s and MB/s of shards rebuilt, beside
this run's one-core limits (disk write + fsync, TCP loopback, zfec 4+2 encode), plus the cost
of a pass over a healthy cluster. MB = 10^6 bytes.
"""

from __future__ import annotations

import asyncio
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

from gateway.objects.api import PutMetadata

__all__ = ["run"]

MiB = 1024 * 1024
# (object size, count): inline objects, one-block objects, many-block objects
OBJECTS = [(16 * 1024, 200), (MiB, 48), (32 * MiB, 2), (128 * MiB, 1)]
VICTIM = "node-4"


async def _body(pattern: bytes, size: int, chunk: int = 256 * 1024):
    """`size` bytes of a repeated pattern, made as sent (no whole object in memory)."""
    for offset in range(0, size, chunk):
        start = offset % len(pattern)
        yield pattern[start : start + min(chunk, size - offset)]


async def _write(layer) -> None:
    await layer.make_bucket("bench")
    gate = asyncio.Semaphore(8)
    pattern = os.urandom(32 * MiB)

    async def put(size: int, i: int) -> None:
        async with gate:
            await layer.put_object("bench", f"obj-{size}-{i}", _body(pattern, size),
                                   size=size, metadata=PutMetadata())
    # large objects first, one at a time: the peak RSS of the writes is then known
    for size, count in sorted(OBJECTS, reverse=True):
        await asyncio.gather(*(put(size, i) for i in range(count)))


async def _heal(layer) -> tuple[object, float, float]:
    from gateway.healing import Healer, heal_pass

    healer = Healer(layer.ctx, commit_window=0.0)
    started, cpu = time.perf_counter(), time.process_time()
    report = await heal_pass(healer, concurrency=8)
    return report, time.perf_counter() - started, time.process_time() - cpu


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def _heal_by_size(layer) -> list[tuple[int, int, float, int, float]]:
    """(object size, objects, seconds, shard bytes, growth of the process's peak RSS in MiB)
    healing each size class on its own: the peak must not follow the object size."""
    from gateway.healing import Healer

    healer = Healer(layer.ctx, commit_window=0.0)
    await healer.heal_buckets()
    out = []
    gate = asyncio.Semaphore(8)
    for size, count in OBJECTS:
        rebuilt = 0

        async def one(i: int, size: int = size) -> None:
            nonlocal rebuilt
            async with gate:
                result = await healer.heal_object("bench", f"obj-{size}-{i}")
                assert result.outcome == "healed", result
                rebuilt += result.bytes_rebuilt
        started, peak = time.perf_counter(), _peak_mib()
        await asyncio.gather(*(one(i) for i in range(count)))
        out.append((size, count, time.perf_counter() - started, rebuilt, _peak_mib() - peak))
    return out


def _layer(cluster):
    from gateway.objects.erasure_layer import build_erasure_layer

    cert, key = cluster.admin_cert()
    return build_erasure_layer(cluster.topology_path, node_cert=cert, node_key=key,
                               node_ca=cluster.ca_path, parity=2)


def _in_layer(cluster, fn):
    async def go():
        layer = _layer(cluster)
        try:
            return await fn(layer)
        finally:
            await layer.close()
    return asyncio.run(go())


def _wipe(cluster) -> None:
    from cluster.processes import stop

    record = cluster.record(VICTIM)
    stop(record)
    data = Path(record.data_dir)
    shutil.rmtree(data)
    data.mkdir()
    cluster.start(VICTIM)


def run() -> list[dict[str, object]]:
    """Rows: the wiped-node heal and a healthy pass, with ratios to one-core limits."""
    from bench.erasure import one_core_limits
    from bench.limits import measure
    from cluster.launcher import Cluster, ClusterSpec

    limits = measure()
    zfec = one_core_limits()["zfec 4+2 encode, tuned malloc"]
    with tempfile.TemporaryDirectory(prefix="bench-heal-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            cluster.up(ClusterSpec(nodes=6, gateways=0, kes=0, parity=2, ports="auto"),
                       log=lambda _line: None)
            _in_layer(cluster, _write)
            _wipe(cluster)
            wiped = _in_layer(cluster, _heal)
            healthy = _in_layer(cluster, _heal)
            _wipe(cluster)
            by_size = _in_layer(cluster, _heal_by_size)
        finally:
            cluster.down()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    data_mb = sum(size * count for size, count in OBJECTS) / 1e6
    rows: list[dict[str, object]] = [
        {"bench": "limit", "stage": "disk write+fsync", "MB/s": round(limits.disk_write_fsync)},
        {"bench": "limit", "stage": "TCP loopback", "MB/s": round(limits.loopback_tcp)},
        {"bench": "limit", "stage": "zfec 4+2 encode", "MB/s": round(zfec)}]
    for name, (report, seconds, cpu) in (("wiped node", wiped), ("healthy pass", healthy)):
        rebuilt = report.counts.bytes_rebuilt / 1e6
        rows.append({
            "bench": name, "objects": report.counts.checked,
            "object data MB": round(data_mb), "shards rebuilt": report.counts.shards_rebuilt,
            "shard MB rebuilt": round(rebuilt, 1), "seconds": round(seconds, 2),
            "objects/s": round(report.counts.checked / seconds),
            "shard MB/s": round(rebuilt / seconds, 1),
            # each rebuilt shard MB costs k = 4 MB read over loopback, decoded and re-encoded
            "read MB/s / TCP loopback": round(4 * rebuilt / seconds / limits.loopback_tcp, 3),
            "shard MB/s / disk fsync": round(rebuilt / seconds / limits.disk_write_fsync, 3),
            "healer CPU-s": round(cpu, 2), "peak RSS MiB": round(peak),
        })
    for size, count, seconds, rebuilt, growth in by_size:
        shard_rate = rebuilt / 1e6 / seconds
        rows.append({
            "bench": f"wiped, {size // 1024} KiB objects", "objects": count,
            "object data MB": round(size * count / 1e6),
            "shard MB rebuilt": round(rebuilt / 1e6, 1),
            "seconds": round(seconds, 2), "objects/s": round(count / seconds),
            "shard MB/s": round(shard_rate, 1),
            "read MB/s / TCP loopback": round(4 * shard_rate / limits.loopback_tcp, 3),
            "shard MB/s / disk fsync": round(shard_rate / limits.disk_write_fsync, 3),
            "peak RSS growth MiB": round(growth),
        })
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
