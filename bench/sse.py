"""Server-side encryption through real gateways: PUT/GET MB/s and small-object ops/s for SSE-S3
and SSE-C beside unencrypted requests, in the same run on one cluster (6 nodes EC 4+2, 2 KES
servers), the cost of encryption as ratios, and the share of a small SSE-S3 PUT that is the
KES round trip, in both data-key modes.

    .venv/bin/python -m bench.sse [--seconds 2.5]

Three gateways share the cluster: `default` (one KES generate per object, read cache on),
`bucket-keys` (TESSERA_KMS_DATA_KEY_CACHE=bucket: data keys shared per bucket) and
`no-read-cache` (TESSERA_KMS_DECRYPT_CACHE=off: a KES decrypt on every read). SSE-C needs TLS,
so it is compared with unencrypted requests over the same HTTPS port. Phases take turns and
are bounded in time; the client is a lean asyncio loop over keep-alive connections with
requests signed once up front, so its CPU stays small beside the gateway's.
MB = 10^6 bytes of object payload.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import ssl
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

__all__ = ["run"]

SMALL, LARGE = 4096, 16 * 1024 * 1024
KEYS = {SMALL: 64, LARGE: 4}
CUSTOMER_KEY = os.urandom(32)
GATEWAYS = {  # gateway name -> environment it runs with
    "gateway-1": {},
    "gateway-2": {"TESSERA_KMS_DATA_KEY_CACHE": "bucket"},
    "gateway-3": {"TESSERA_KMS_DECRYPT_CACHE": "off"},
}
LABELS = {"gateway-1": "default", "gateway-2": "bucket-keys", "gateway-3": "no-read-cache"}


@dataclass(frozen=True)
class Target:
    """One way of sending requests: a gateway address, TLS or not, and SSE headers."""

    name: str
    host: str
    port: int
    tls: bool
    headers: tuple[tuple[str, str], ...]


class Signer:
    def __init__(self, access: str, secret: str):
        self.access, self.secret = access, secret

    def request(self, target: Target, method: str, path: str, body_size: int = 0,
                query: str = "") -> bytes:
        now = datetime.now(tz=UTC)
        amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
        headers = {"host": f"{target.host}:{target.port}",
                   "x-amz-content-sha256": "UNSIGNED-PAYLOAD", "x-amz-date": amz_date}
        if method == "PUT":
            headers["content-length"] = str(body_size)
        if path.count("/") > 1:  # object requests; reads carry only SSE-C headers
            headers.update((k, v) for k, v in target.headers
                           if method == "PUT" or "-customer-" in k)
        names = sorted(headers)
        canonical = "\n".join([method, path, query,
                               "".join(f"{n}:{headers[n]}\n" for n in names),
                               ";".join(names), "UNSIGNED-PAYLOAD"])
        scope = f"{day}/us-east-1/s3/aws4_request"
        to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                             hashlib.sha256(canonical.encode()).hexdigest()])
        key = ("AWS4" + self.secret).encode()
        for part in (day, "us-east-1", "s3", "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        signature = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
        headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={self.access}/{scope}, "
                                    f"SignedHeaders={';'.join(names)}, Signature={signature}")
        lines = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        target_path = f"{path}?{query}" if query else path
        return f"{method} {target_path} HTTP/1.1\r\n{lines}\r\n".encode()


async def _response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    status = int(head[9:12])
    if status >= 300:  # small XML error: say what it was
        raise RuntimeError(f"HTTP {status}: {(await reader.readexactly(length))[:300]!r}")
    remaining = length
    while remaining:
        remaining -= len(await reader.read(min(remaining, 1 << 20)))
    return status


async def _connect(target: Target, tls: ssl.SSLContext | None):
    return await asyncio.open_connection(target.host, target.port,
                                         ssl=tls if target.tls else None,
                                         limit=4 * 1024 * 1024)


async def _loop(target: Target, tls: ssl.SSLContext | None, requests: list[bytes],
                body: bytes | None, seconds: float,
                connections: int) -> tuple[int, float, float]:
    """(requests done, seconds taken, summed latency) of `connections` keep-alive loops."""
    done, latency = 0, 0.0
    stop = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        nonlocal done, latency
        reader, writer = await _connect(target, tls)
        i = offset
        try:
            while time.monotonic() < stop:
                started = time.perf_counter()
                writer.write(requests[i % len(requests)])
                if body is not None:
                    writer.write(body)
                await _response(reader)
                latency += time.perf_counter() - started
                done += 1
                i += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(k * 7) for k in range(connections)))
    return done, time.monotonic() - started, latency


async def _prepare(signer: Signer, target: Target, tls: ssl.SSLContext | None, bucket: str,
                   size: int) -> None:
    reader, writer = await _connect(target, tls)
    body = os.urandom(size)
    try:
        for k in range(KEYS[size]):
            writer.write(signer.request(target, "PUT", f"/{bucket}/{size}-{k}", size))
            writer.write(body)
            if await _response(reader) != 200:
                raise RuntimeError(f"{target.name}: setup PUT failed")
    finally:
        writer.close()


def _targets(cluster) -> dict[str, Target]:
    ssec = (("x-amz-server-side-encryption-customer-algorithm", "AES256"),
            ("x-amz-server-side-encryption-customer-key",
             base64.b64encode(CUSTOMER_KEY).decode()),
            ("x-amz-server-side-encryption-customer-key-md5",
             base64.b64encode(hashlib.md5(CUSTOMER_KEY).digest()).decode()))
    s3 = (("x-amz-server-side-encryption", "AES256"),)
    out = {}
    for index, name in enumerate(GATEWAYS):
        record = cluster.by_role("gateway")[index]
        host, port = record.address.rsplit(":", 1)
        _, tls_port = record.extra["https"].rsplit(":", 1)
        label = LABELS[name]
        out[f"plain {label}"] = Target(f"plain {label}", host, int(port), False, ())
        out[f"SSE-S3 {label}"] = Target(f"SSE-S3 {label}", host, int(port), False, s3)
        if name == "gateway-1":
            out["plain https"] = Target("plain https", host, int(tls_port), True, ())
            out["SSE-C https"] = Target("SSE-C https", host, int(tls_port), True, ssec)
    return out


# (phase, size, connections, targets compared); targets named in _targets
PHASES = [
    ("PUT", SMALL, 1, ["plain default", "SSE-S3 default", "SSE-S3 bucket-keys"]),
    ("PUT", SMALL, 8, ["plain default", "SSE-S3 default", "SSE-S3 bucket-keys",
                       "plain https", "SSE-C https"]),
    ("GET", SMALL, 8, ["plain default", "SSE-S3 default", "SSE-S3 no-read-cache",
                       "plain https", "SSE-C https"]),
    # a listing of 68 objects: SSE-S3 ETags are sealed, so each listed object needs its key
    ("LIST", SMALL, 4, ["plain default", "SSE-S3 default", "SSE-S3 no-read-cache"]),
    ("PUT", LARGE, 2, ["plain default", "SSE-S3 default", "plain https", "SSE-C https"]),
    ("GET", LARGE, 2, ["plain default", "SSE-S3 default", "plain https", "SSE-C https"]),
]


def _bucket(target: Target) -> str:
    return "bench-" + target.name.replace(" ", "-").lower()


ROUNDS = 4  # each phase: targets take turns in short slices, totals summed (shared machine)


async def _measure(cluster, seconds: float) -> list[tuple[str, int, int, str, float, float]]:
    access, secret = cluster.credentials
    signer = Signer(access, secret)
    tls = ssl.create_default_context(cafile=str(cluster.ca_path))
    targets = _targets(cluster)
    for target in targets.values():
        reader, writer = await _connect(target, tls)
        writer.write(signer.request(target, "PUT", f"/{_bucket(target)}"))
        await _response(reader)
        writer.close()
        for size in (SMALL, LARGE):
            await _prepare(signer, target, tls, _bucket(target), size)
    kes = _KESLoop(cluster)
    out = []
    for method, size, connections, names in PHASES:
        body = os.urandom(size) if method == "PUT" else None
        totals: dict[str, list[float]] = {name: [0, 0.0, 0.0] for name in names}
        with_kes = method == "PUT" and size == SMALL and connections == 1
        if with_kes:
            totals[KES_TARGET] = [0, 0.0, 0.0]
        for _ in range(ROUNDS):
            for name, total in totals.items():
                if name == KES_TARGET:
                    got = await kes.loop(seconds / ROUNDS)
                else:
                    target = targets[name]
                    if method == "LIST":
                        requests = [signer.request(target, "GET", f"/{_bucket(target)}",
                                                   query="list-type=2")]
                    else:
                        requests = [signer.request(target, method,
                                                   f"/{_bucket(target)}/{size}-{k}",
                                                   size if body is not None else 0)
                                    for k in range(KEYS[size])]
                    got = await _loop(target, tls, requests, body, seconds / ROUNDS,
                                      connections)
                for i, value in enumerate(got):
                    total[i] += value
        for name, (done, elapsed, latency) in totals.items():
            out.append((method, size, connections, name, done / elapsed,
                        latency / max(done, 1) * 1000))
    await kes.close()
    return out


KES_TARGET = "KES generate (bench client)"


class _KESLoop:
    """Sequential KES generates with a fresh object context each, as a gateway PUT makes."""

    def __init__(self, cluster) -> None:
        from kes.client import KESClient, KESConfig

        self.config = KESConfig.from_env(cluster.env_vars())
        self.client = KESClient(self.config)
        self.count = 0

    async def loop(self, seconds: float) -> tuple[int, float, float]:
        done, latency = 0, 0.0
        started = time.monotonic()
        while time.monotonic() - started < seconds:
            self.count += 1
            t = time.perf_counter()
            await self.client.generate_key(self.config.key_name,
                                           f'{{"bench":"bench/{self.count}"}}'.encode())
            latency += time.perf_counter() - t
            done += 1
        return done, time.monotonic() - started, latency

    async def close(self) -> None:
        await self.client.aclose()


def _rows(measured) -> list[dict[str, object]]:
    from bench.limits import measure

    limits = measure()
    rows: list[dict[str, object]] = [
        {"op": "limit", "target": "AES-256-GCM, 64 KiB, one core", "MB/s": limits.aes_gcm_64k},
        {"op": "limit", "target": "TCP over loopback, 1 MiB writes", "MB/s": limits.loopback_tcp},
        {"op": "limit", "target": "MD5, one core", "MB/s": limits.md5}]
    by = {(m, s, c, n): (ops, ms) for m, s, c, n, ops, ms in measured}
    for method, size, connections, name, ops, ms in measured:
        if name == KES_TARGET:
            continue
        base = "plain https" if "https" in name else "plain default"
        plain_ops = by[(method, size, connections, base)][0]
        listing = method == "LIST"
        row: dict[str, object] = {
            "op": method, "size": "68 keys" if listing else f"{size // 1024} KiB"
            if size < 1 << 20 else f"{size >> 20} MiB", "clients": connections, "target": name,
            "ops/s": round(ops, 1), "MB/s": None if listing else round(ops * size / 1e6, 1),
            "ms/op": round(ms, 2), "vs plain": round(ops / plain_ops, 2) if plain_ops else None}
        if size == LARGE:
            row["MB/s / AES core"] = round(ops * size / 1e6 / limits.aes_gcm_64k, 4)
            row["MB/s / TCP loopback"] = round(ops * size / 1e6 / limits.loopback_tcp, 3)
        rows.append(row)
    one = {n: by[("PUT", SMALL, 1, n)][1] for n in ("plain default", "SSE-S3 default",
                                                    "SSE-S3 bucket-keys", KES_TARGET)}
    per_object, shared, kes_ms = one["SSE-S3 default"], one["SSE-S3 bucket-keys"], \
        one[KES_TARGET]
    rows.append({"op": "KMS share", "size": "4 KiB", "clients": 1,
                 "target": "KES generate / SSE-S3 PUT latency (default mode)",
                 "ms/op": round(kes_ms, 2), "vs plain": round(kes_ms / per_object, 3)})
    rows.append({"op": "KMS share", "size": "4 KiB", "clients": 1,
                 "target": "(default - bucket-keys) / default SSE-S3 PUT latency",
                 "ms/op": round(per_object - shared, 2),
                 "vs plain": round((per_object - shared) / per_object, 3)})
    return rows


def run(seconds: float = 2.5) -> list[dict[str, object]]:
    from cluster.launcher import Cluster, ClusterSpec

    with tempfile.TemporaryDirectory(prefix="bench-sse-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            cluster.up(ClusterSpec(nodes=6, gateways=len(GATEWAYS), kes=2, parity=2,
                                   ports="auto"), log=lambda _line: None)
            for name, env in GATEWAYS.items():
                if env:
                    cluster.record(name).env.update(env)
                    cluster.restart(name)
            measured = asyncio.run(_measure(cluster, seconds))
        finally:
            cluster.down()
    return _rows(measured)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.sse")
    parser.add_argument("--seconds", type=float, default=2.5, help="per phase and target")
    args = parser.parse_args(argv)
    from bench.__main__ import format_table

    print(format_table(run(args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
