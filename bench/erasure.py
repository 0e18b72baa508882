"""Object-layer PUT/GET throughput in-process against a local 6-node cluster (EC 4+2, mTLS),
beside the one-core limits of its building blocks (zfec 4+2 encode, MD5, TCP over loopback)
measured in the same run, as ratios; also the gateway's CPU-seconds per GB and its peak RSS.
MB = 10^6 bytes of object payload.
"""

from __future__ import annotations

import asyncio
import os
import resource
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

from gateway.erasure import BLOCK_SIZE, Geometry, encode_block, tune_malloc
from gateway.objects.api import PutMetadata

__all__ = ["run"]

MiB = 1024 * 1024
# (object size, objects per phase, concurrent clients); each phase is bounded
PHASES = [(MiB, 48, 1), (MiB, 96, 8), (64 * MiB, 3, 1), (64 * MiB, 4, 4)]


def _rate(fn: Callable[[], object], megabytes: float, seconds: float = 0.6) -> float:
    fn()
    count, started = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - started) < seconds:
        fn()
        count += 1
    return count * megabytes / elapsed


def _zfec_rate() -> float:
    """One core, zfec 4+2 on 1,049,088-byte blocks, as the PUT path calls it."""
    block = os.urandom(BLOCK_SIZE)
    geometry = Geometry(4, 2)
    return _rate(lambda: encode_block(geometry, block), BLOCK_SIZE / 1e6)


def one_core_limits() -> dict[str, float]:
    """MB/s of payload per core for each CPU stage of a plain PUT/GET, this run. zfec is
    measured before and after glibc malloc tuning (process-wide, see erasure.tune_malloc)."""
    from bench.limits import measure

    limits = measure()
    untuned = _zfec_rate()
    tune_malloc()
    return {"zfec 4+2 encode, default malloc": untuned,
            "zfec 4+2 encode, tuned malloc": _zfec_rate(),
            "MD5": limits.md5, "TCP loopback": limits.loopback_tcp}


async def _body(pattern: bytes, size: int, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    """`size` bytes of a repeated random pattern, generated as sent: the bench itself holds no
    whole object, so the peak RSS it reports is the gateway's own working memory."""
    view = memoryview(pattern)
    for offset in range(0, size, chunk):
        start = offset % len(pattern)
        yield bytes(view[start : start + min(chunk, size - offset)])


async def _phase(layer, size: int, count: int,
                 clients: int) -> tuple[float, float, float, float]:
    """PUT MB/s, GET MB/s, and the gateway's CPU-seconds per GB for each."""
    pattern = os.urandom(MiB)
    meta = PutMetadata()
    gate = asyncio.Semaphore(clients)

    async def put(i: int) -> None:
        async with gate:
            await layer.put_object("bench", f"obj-{size}-{i}", _body(pattern, size),
                                   size=size, metadata=meta)

    async def get(i: int) -> None:
        async with gate:
            reader = await layer.open_object("bench", f"obj-{size}-{i}")
            got = 0
            async for chunk in reader.stream():
                got += len(chunk)
            assert got == size

    results: list[float] = []
    for op in (put, get):
        started, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(op(i) for i in range(count)))
        megabytes = size * count / 1e6
        results += [megabytes / (time.perf_counter() - started),
                    (time.process_time() - cpu) / (megabytes / 1000)]
    return results[0], results[2], results[1], results[3]


async def _measure(cluster) -> list[tuple[int, int, float, float, float, float, float]]:
    from gateway.objects.erasure_layer import build_erasure_layer

    cert, key = cluster.admin_cert()
    layer = build_erasure_layer(cluster.topology_path, node_cert=cert, node_key=key,
                                node_ca=cluster.ca_path, parity=2)
    try:
        await layer.make_bucket("bench")
        out = []
        for size, count, clients in PHASES:
            rates = await _phase(layer, size, count, clients)
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            out.append((size, clients, *rates, peak))
        return out
    finally:
        await layer.close()


def run() -> list[dict[str, object]]:
    """Rows: PUT/GET MB/s per object size and client count, and ratios to one-core limits."""
    from cluster.launcher import Cluster, ClusterSpec

    limits = one_core_limits()
    rows: list[dict[str, object]] = [
        {"bench": "limit", "stage": name, "MB/s per core": round(rate)}
        for name, rate in limits.items()]
    with tempfile.TemporaryDirectory(prefix="bench-erasure-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            cluster.up(ClusterSpec(nodes=6, gateways=0, kes=0, parity=2, ports="auto"),
                       log=lambda _line: None)
            measured = asyncio.run(_measure(cluster))
        finally:
            cluster.down()
    for size, clients, put_rate, get_rate, put_cpu, get_cpu, peak in measured:
        rows.append({
            "bench": "object layer", "size": f"{size // MiB} MiB", "clients": clients,
            "PUT MB/s": round(put_rate), "GET MB/s": round(get_rate),
            "PUT gateway CPU-s/GB": round(put_cpu, 2), "GET gateway CPU-s/GB": round(get_cpu, 2),
            "peak RSS MiB": round(peak),
            "PUT / MD5 core": round(put_rate / limits["MD5"], 2),
            "PUT / zfec core": round(put_rate / limits["zfec 4+2 encode, tuned malloc"], 2),
            "GET / TCP loopback": round(get_rate / limits["TCP loopback"], 2),
        })
    return rows


if __name__ == "__main__":
    for row in run():
        print(row)
