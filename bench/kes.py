"""KES section: generate+decrypt pairs/s through the client pool against real KES servers (mTLS),
and the latency a dead or hung (SIGSTOP) first endpoint adds.

`python -m bench kes` (or `python -m bench.kes`). The reference ("limit") is measured in the same
run: sequential keep-alive mTLS round trips/s to the same server's cheapest route (/version) with
the stdlib's blocking http.client, i.e. what this machine does for one request with no KES work.
"""

from __future__ import annotations

import asyncio
import http.client
import os
import random
import ssl
import statistics
import sys
import tempfile
import time
from pathlib import Path

from cluster.launcher import Cluster, ClusterSpec
from kes.client import KESClient, KESConfig

__all__ = ["run"]

KEY = "minio-default-key"
ATTEMPT_TIMEOUT = 1.0


class _FirstEndpoint(random.Random):
    """Always start at the first endpoint, to measure the cost of that one being bad."""

    def randrange(self, *_args: object, **_kwargs: object) -> int:  # type: ignore[override]
        return 0


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _config(cluster: Cluster, names: list[str]) -> KESConfig:
    base = KESConfig.from_env(cluster.env_vars())
    urls = tuple(f"https://{cluster.record(n).address}" for n in names)
    return KESConfig(urls, base.cert_file, base.key_file, capath=base.capath,
                     key_name=KEY, timeout=ATTEMPT_TIMEOUT, call_timeout=5.0)


async def _pairs(config: KESConfig, count: int, concurrency: int,
                 rng: random.Random | None = None) -> tuple[float, list[float]]:
    """(wall seconds, per-pair latencies) for `count` pairs at `concurrency`."""
    latencies: list[float] = []
    slots = asyncio.Semaphore(concurrency)
    async with KESClient(config, rng=rng) as kes:
        if rng is None:  # throughput runs start warm; latency runs measure the first call
            await kes.generate_key(KEY, b"{}")

        async def pair(i: int) -> None:
            context = f'{{"bench":"bench/{i}"}}'.encode()
            async with slots:
                start = time.perf_counter()
                plain, sealed = await kes.generate_key(KEY, context)
                if await kes.decrypt(KEY, sealed, context) != plain:
                    raise AssertionError("decrypt returned a different key")
                latencies.append(time.perf_counter() - start)

        start = time.perf_counter()
        await asyncio.gather(*(pair(i) for i in range(count)))
        return time.perf_counter() - start, latencies


def _throughput_row(cluster: Cluster, names: list[str], concurrency: int, count: int,
                    reference: float) -> dict:
    pids = [cluster.record(n).pid for n in names]
    servers0 = sum(_cpu_seconds(p) for p in pids)
    client0 = time.process_time()
    wall, lat = asyncio.run(_pairs(_config(cluster, names), count, concurrency))
    rate = count / wall
    return {
        "case": f"{len(names)} server(s), {concurrency} in flight",
        "pairs_per_s": round(rate),
        "vs_limit": round(2 * rate / reference, 2),
        "p50_ms": round(statistics.median(lat) * 1000, 2),
        "p99_ms": round(sorted(lat)[int(len(lat) * 0.99) - 1] * 1000, 2),
        "client_cpu_ms_per_pair": round((time.process_time() - client0) / count * 1000, 2),
        "server_cpu_ms_per_pair": round(
            (sum(_cpu_seconds(p) for p in pids) - servers0) / count * 1000, 2),
    }


def _sequential(cluster: Cluster, names: list[str]) -> list[float]:
    """Latencies of 200 sequential pairs from a fresh client that starts at `names[0]`."""
    _, lat = asyncio.run(_pairs(_config(cluster, names), 200, 1, rng=_FirstEndpoint()))
    return lat


def _fault_row(case: str, lat: list[float], healthy: list[float]) -> dict:
    """The first pair of a fresh client pays for discovering the bad endpoint (and, like the
    healthy baseline, for its TLS handshakes); later pairs should not pay (it is sidelined)."""
    rest, healthy_rest = lat[1:], healthy[1:]
    return {
        "case": case,
        "first_pair_ms": round(lat[0] * 1000, 1),
        "extra_first_ms": round((lat[0] - healthy[0]) * 1000, 1),
        "p50_ms": round(statistics.median(rest) * 1000, 2),
        "extra_p50_ms": round((statistics.median(rest) - statistics.median(healthy_rest))
                              * 1000, 2),
        "max_later_ms": round(max(rest) * 1000, 1),
    }


def _reference_round_trips(cluster: Cluster, seconds: float = 1.0) -> float:
    """Sequential keep-alive mTLS GET /version with http.client: requests per second."""
    record = cluster.record("kes-1")
    cert, key = cluster.admin_cert()
    ctx = ssl.create_default_context(cafile=str(cluster.ca_path))
    ctx.load_cert_chain(str(cert), str(key))
    host, port = record.address.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=5)
    done, start = 0, time.perf_counter()
    try:
        while time.perf_counter() - start < seconds:
            conn.request("GET", "/version")
            conn.getresponse().read()
            done += 1
    finally:
        conn.close()
    return done / (time.perf_counter() - start)


def run() -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-kes-") as root:
        cluster = Cluster(root)
        try:
            cluster.up(ClusterSpec(nodes=0, gateways=0, kes=2, ports="auto"),
                       log=lambda _line: None)
            reference = _reference_round_trips(cluster)
            rows: list[dict] = [{"case": "limit: sequential mTLS round trips/s (/version)",
                                 "pairs_per_s": round(reference / 2), "vs_limit": 1.0}]
            for names in (["kes-1"], ["kes-1", "kes-2"]):
                for concurrency, count in ((1, 300), (16, 1500)):
                    rows.append(_throughput_row(cluster, names, concurrency, count, reference))
            healthy = _sequential(cluster, ["kes-2", "kes-1"])
            rows.append(_fault_row("healthy pool, fresh client (baseline)", healthy, healthy))
            cluster.kill("kes-2")
            rows.append(_fault_row("first endpoint dead (kill -9)",
                                   _sequential(cluster, ["kes-2", "kes-1"]), healthy))
            cluster.start("kes-2")
            cluster.pause("kes-2")
            rows.append(_fault_row(f"first endpoint hung (SIGSTOP), attempt timeout "
                                   f"{ATTEMPT_TIMEOUT:g}s",
                                   _sequential(cluster, ["kes-2", "kes-1"]), healthy))
            cluster.resume("kes-2")
            return rows
        finally:
            cluster.down()


if __name__ == "__main__":
    for row in run():
        print(row, file=sys.stdout)
