"""A 2 GiB PUT and GET through one gateway: its memory stays flat, the bytes come back
exact, and small requests keep being served while the large ones stream."""

from __future__ import annotations

import asyncio
import hashlib
import os
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench._s3client import S3Connection
from tests.conftest import running_cluster

pytestmark = pytest.mark.slow

SIZE = 2 << 30
CHUNK = 1 << 20
RSS_BUDGET_MIB = 100


def _status_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def _reset_peak(pid: int) -> None:
    """VmHWM restarts from the current RSS."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def _chunks(digest: hashlib._Hash) -> Iterator[bytes]:
    """SIZE bytes, every MiB different (a counter in front of one random MiB)."""
    base = os.urandom(CHUNK)
    for i in range(SIZE // CHUNK):
        chunk = i.to_bytes(8, "little") + base[8:]
        digest.update(chunk)
        yield chunk


async def _small_gets(conn: S3Connection, stop: asyncio.Event, latencies: list[float]) -> None:
    while not stop.is_set():
        t0 = time.perf_counter()
        _, body, _ = await conn.request("GET", "res", "small")
        latencies.append(time.perf_counter() - t0)
        assert len(body) == 4096
        await asyncio.sleep(0.05)


async def _scenario(cluster) -> None:
    gateway = cluster.by_role("gateway")[0]
    host, port = gateway.address.rsplit(":", 1)
    access, secret = cluster.credentials

    def connect() -> S3Connection:
        return S3Connection(host, int(port), access, secret)

    big, small = connect(), connect()
    await big.request("PUT", "res")
    await small.request("PUT", "res", "small", body=os.urandom(4096))
    warm = os.urandom(64 << 20)  # warm every pool and buffer before the baseline
    await big.request("PUT", "res", "warm", body=warm)
    await big.request("GET", "res", "warm", sink=True)
    del warm

    baseline = _status_kib(gateway.pid, "VmRSS")
    _reset_peak(gateway.pid)

    sent = hashlib.sha256()
    stop, latencies = asyncio.Event(), []
    probe = asyncio.ensure_future(_small_gets(small, stop, latencies))
    started = time.perf_counter()
    await big.request("PUT", "res", "two-gib", stream=_chunks(sent), length=SIZE)
    put_seconds = time.perf_counter() - started
    stop.set()
    await probe

    received = hashlib.sha256()
    started = time.perf_counter()
    _, _, length = await big.request("GET", "res", "two-gib", sink=True,
                                     on_chunk=received.update)
    get_seconds = time.perf_counter() - started
    peak = _status_kib(gateway.pid, "VmHWM")
    await big.request("DELETE", "res", "two-gib")
    await big.close()
    await small.close()

    growth_mib = (peak - baseline) / 1024
    print(f"\n2 GiB PUT {SIZE / put_seconds / 1e6:.0f} MB/s, GET {SIZE / get_seconds / 1e6:.0f} "
          f"MB/s; gateway RSS {baseline / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB "
          f"(+{growth_mib:.0f}); {len(latencies)} small GETs during the PUT, p50 "
          f"{statistics.median(latencies) * 1000:.1f} ms, max {max(latencies) * 1000:.0f} ms")
    assert length == SIZE
    assert received.hexdigest() == sent.hexdigest()
    assert growth_mib <= RSS_BUDGET_MIB
    # the event loop kept serving: small GETs went on all along the large PUT
    assert len(latencies) >= put_seconds * 2
    assert statistics.median(latencies) < 0.5


def test_two_gib_put_and_get_keep_gateway_memory_flat(tmp_path: Path) -> None:
    with running_cluster(tmp_path / "cluster", nodes=6, gateways=1, kes=0, parity=2) as cluster:
        asyncio.run(_scenario(cluster))
