"""End-to-end S3 throughput through a real gateway over a real 6-node cluster (EC 4+2, mTLS).

PUT and GET at 4 KiB, 1 MiB and 64 MiB with 1 and 16 concurrent clients; ops/s, MB/s,
p50/p99 latency, the gateway's peak RSS and CPU per GB, beside the one-core limit of the
pipeline stages measured in the same run (`bench.limits`). Objects are not encrypted here;
`bench/sse.py` compares the encryption modes. Each phase is bounded in time and bytes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from pathlib import Path

from bench._cluster import on_one_gateway_cluster
from bench._s3client import S3Connection
from bench.limits import MB, measure

__all__ = ["run"]

PHASE_SECONDS = float(os.environ.get("TESSERA_BENCH_SECONDS", "4"))
MAX_PHASE_BYTES = 1536 << 20  # per PUT phase, so 64 MiB x 16 stays bounded on disk
SIZES = ((4 << 10, "4 KiB"), (1 << 20, "1 MiB"), (64 << 20, "64 MiB"))
CONCURRENCY = (1, 16)
# Swift 2.30 with encryption on, same kind of machine (PERFORMANCE.md): op/s for 4 KiB, MB/s else
SWIFT = {
    ("PUT", 4 << 10, 1): 46, ("PUT", 4 << 10, 16): 65, ("GET", 4 << 10, 1): 104,
    ("GET", 4 << 10, 16): 173, ("PUT", 1 << 20, 1): 29, ("PUT", 1 << 20, 16): 42,
    ("GET", 1 << 20, 1): 82, ("GET", 1 << 20, 16): 135, ("PUT", 64 << 20, 1): 115,
    ("PUT", 64 << 20, 16): 165, ("GET", 64 << 20, 1): 388, ("GET", 64 << 20, 16): 395,
}
# The one-core limits of the machine Swift was measured on (PERFORMANCE.md), MB/s: Swift's
# figures are scaled by this run's pipeline limit over that machine's, as this one is slower
# or faster than it from run to run.
SWIFT_MACHINE = {"md5": 860.0, "zfec_encode_4_2": 1500.0, "xxh3_128": 84000.0,
                 "loopback_tcp": 5900.0}


def put_pipeline(md5: float, zfec_encode_4_2: float, xxh3_128: float,
                 loopback_tcp: float) -> float:
    """MB/s of one core running every stage of a PUT back to back, per byte of object: read
    from the client socket, MD5, zfec-encode, hash and send 1.5x of it to the nodes."""
    return 1 / (1 / md5 + 1 / zfec_encode_4_2 + 1.5 / xxh3_128 + 2.5 / loopback_tcp)


def get_pipeline(xxh3_128: float, loopback_tcp: float) -> float:
    """MB/s of one core receiving an object from the nodes, checking its block hashes and
    sending it to the client."""
    return 1 / (1 / xxh3_128 + 2 / loopback_tcp)


_TICK = os.sysconf("SC_CLK_TCK")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def _peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def _reset_peak_rss(pid: int) -> None:
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")


class _Phase:
    """Counts one timed phase: latencies, bytes, and CPU of the processes under test."""

    def __init__(self, gateway_pid: int, node_pids: list[int]):
        self.gateway_pid, self.node_pids = gateway_pid, node_pids
        self.latencies: list[float] = []
        self.bytes = 0

    def __enter__(self) -> _Phase:
        _reset_peak_rss(self.gateway_pid)
        self.cpu_gateway = _cpu_seconds(self.gateway_pid)
        self.cpu_nodes = sum(_cpu_seconds(p) for p in self.node_pids)
        self.cpu_client = time.process_time()
        self.started = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.elapsed = time.perf_counter() - self.started
        self.cpu_gateway = _cpu_seconds(self.gateway_pid) - self.cpu_gateway
        self.cpu_nodes = sum(_cpu_seconds(p) for p in self.node_pids) - self.cpu_nodes
        self.cpu_client = time.process_time() - self.cpu_client
        self.peak_rss = _peak_rss_mib(self.gateway_pid)

    def row(self, op: str, size: int, label: str, clients: int, limit: float,
            machine: float) -> dict:
        """`limit`: the one-core pipeline MB/s of this run; `machine`: that over the same
        pipeline on the machine Swift was measured on."""
        ops = len(self.latencies)
        mbps = self.bytes / self.elapsed / MB
        gigabytes = max(self.bytes / 1e9, 1e-9)
        lat = sorted(self.latencies)
        swift = SWIFT.get((op, size, clients))
        ours = ops / self.elapsed if size < (1 << 20) else mbps
        return {
            "op": op, "size": label, "clients": clients, "ops": ops,
            "op/s": ops / self.elapsed, "MB/s": mbps,
            "p50 ms": statistics.median(lat) * 1000 if lat else None,
            "p99 ms": lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000 if lat else None,
            "gw peak RSS MiB": self.peak_rss,
            "gw CPU s/GB": self.cpu_gateway / gigabytes,
            "nodes CPU s/GB": self.cpu_nodes / gigabytes,
            "client CPU %": 100 * self.cpu_client / self.elapsed,
            "x 1-core pipeline": mbps / limit,
            "x Swift": ours / swift if swift else None,
            "x Swift, machine-adjusted": ours / (swift * machine) if swift else None,
        }


async def _put_phase(conns: list[S3Connection], bucket: str, size: int, tag: str,
                     phase: _Phase) -> list[str]:
    payload = memoryview(os.urandom(size))
    deadline = time.perf_counter() + PHASE_SECONDS
    max_ops = max(len(conns), MAX_PHASE_BYTES // size)
    keys: list[str] = []

    async def worker(i: int, conn: S3Connection) -> None:
        n = 0
        while time.perf_counter() < deadline and len(keys) < max_ops:
            key = f"{tag}/{i}/{n}"
            t0 = time.perf_counter()
            await conn.request("PUT", bucket, key, body=payload)
            phase.latencies.append(time.perf_counter() - t0)
            phase.bytes += size
            keys.append(key)
            n += 1

    with phase:
        await asyncio.gather(*(worker(i, c) for i, c in enumerate(conns)))
    return keys


async def _get_phase(conns: list[S3Connection], bucket: str, keys: list[str],
                     phase: _Phase) -> None:
    deadline = time.perf_counter() + PHASE_SECONDS
    next_key = iter(range(10**9))

    async def worker(conn: S3Connection) -> None:
        while time.perf_counter() < deadline:
            key = keys[next(next_key) % len(keys)]
            t0 = time.perf_counter()
            _, _, received = await conn.request("GET", bucket, key, sink=True)
            phase.latencies.append(time.perf_counter() - t0)
            phase.bytes += received

    with phase:
        await asyncio.gather(*(worker(c) for c in conns))


async def _delete_all(conns: list[S3Connection], bucket: str, keys: list[str]) -> None:
    async def worker(i: int, conn: S3Connection) -> None:
        for key in keys[i :: len(conns)]:
            await conn.request("DELETE", bucket, key)

    await asyncio.gather(*(worker(i, c) for i, c in enumerate(conns)))


async def _measure(cluster) -> list[dict]:
    limits = measure()
    here = {name: getattr(limits, name) for name in SWIFT_MACHINE}
    put_limit = put_pipeline(**here)
    get_limit = get_pipeline(here["xxh3_128"], here["loopback_tcp"])
    put_machine = put_limit / put_pipeline(**SWIFT_MACHINE)
    get_machine = get_limit / get_pipeline(SWIFT_MACHINE["xxh3_128"], SWIFT_MACHINE["loopback_tcp"])
    gateway = cluster.by_role("gateway")[0]
    host, port = gateway.address.rsplit(":", 1)
    access, secret = cluster.credentials
    node_pids = [r.pid for r in cluster.by_role("node")]
    rows = []
    setup = S3Connection(host, int(port), access, secret)
    await setup.request("PUT", "bench")
    for size, label in SIZES:
        for clients in CONCURRENCY:
            conns = [S3Connection(host, int(port), access, secret) for _ in range(clients)]
            put = _Phase(gateway.pid, node_pids)
            keys = await _put_phase(conns, "bench", size, f"{label}-{clients}", put)
            rows.append(put.row("PUT", size, label, clients, put_limit, put_machine))
            get = _Phase(gateway.pid, node_pids)
            await _get_phase(conns, "bench", keys, get)
            rows.append(get.row("GET", size, label, clients, get_limit, get_machine))
            await _delete_all(conns, "bench", keys)
            for c in conns:
                await c.close()
    await setup.close()
    return rows


def run() -> list[dict]:
    return on_one_gateway_cluster(_measure)


if __name__ == "__main__":
    from bench.__main__ import format_table

    print(format_table(run()))
