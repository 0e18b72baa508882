"""Benchmark of the S3 front alone: PUT/GET loops against `python -m gateway --memory`, served
by uvicorn (what we ship) or granian (the alternative measured), beside this machine's loopback
TCP limit measured in the same run.

    .venv/bin/python -m bench.s3_front [--seconds 3] [--servers uvicorn,granian]
    .venv/bin/python -m bench s3_front      (a section of `make bench`)

The client is a minimal asyncio HTTP/1.1 loop over keep-alive connections with requests
signed once up front (SigV4, UNSIGNED-PAYLOAD), so client CPU stays small beside the server's.
Every loop is bounded in time; every process started is stopped by its pid.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hashlib
import hmac
import importlib.util
import os
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from cluster.launcher import free_port

ACCESS, SECRET = "bench-admin", "bench-secret-123"
ROOT = Path(__file__).resolve().parents[1]
KEYS = 32




def granian_app():
    """Factory granian imports: the same application `python -m gateway --memory` serves."""
    from gateway.app import build_app
    from gateway.config import load_config

    return build_app(load_config(["--listen", "127.0.0.1:1", "--memory"]))


@contextmanager
def gateway(server: str):
    port = free_port()
    env = {**os.environ, "MINIO_ROOT_USER": ACCESS, "MINIO_ROOT_PASSWORD": SECRET,
           "TESSERA_GATEWAY_LOG_LEVEL": "warning"}
    if server == "uvicorn":
        argv = [sys.executable, "-m", "gateway", "--memory", "--listen", f"127.0.0.1:{port}",
                "--log-level", "warning"]
    else:
        argv = [sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1",
                "--port", str(port), "--loop", "uvloop", "--workers", "1", "--factory",
                "--log-level", "warning", "--no-ws", "bench.s3_front:granian_app"]
    proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"{server} did not start") from None
                time.sleep(0.05)
        yield port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _sign(method: str, path: str, port: int, extra: dict[str, str]) -> dict[str, str]:
    now = datetime.now(tz=UTC)
    amz_date, day = now.strftime("%Y%m%dT%H%M%SZ"), now.strftime("%Y%m%d")
    headers = {"host": f"127.0.0.1:{port}", "x-amz-content-sha256": "UNSIGNED-PAYLOAD",
               "x-amz-date": amz_date, **{k.lower(): v for k, v in extra.items()}}
    names = sorted(headers)
    canonical = "\n".join([method, path, "", "".join(f"{n}:{headers[n]}\n" for n in names),
                           ";".join(names), "UNSIGNED-PAYLOAD"])
    scope = f"{day}/us-east-1/s3/aws4_request"
    to_sign = "\n".join(["AWS4-HMAC-SHA256", amz_date, scope,
                         hashlib.sha256(canonical.encode()).hexdigest()])
    key = ("AWS4" + SECRET).encode()
    for part in (day, "us-east-1", "s3", "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    sig = hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()
    headers["authorization"] = (f"AWS4-HMAC-SHA256 Credential={ACCESS}/{scope}, "
                                f"SignedHeaders={';'.join(names)}, Signature={sig}")
    return headers


def _request(method: str, path: str, port: int, body: bytes = b"") -> bytes:
    extra = {"content-length": str(len(body))} if method == "PUT" else {}
    headers = _sign(method, path, port, extra)
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    return head.encode() + b"\r\n" + body


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    if length:
        await reader.readexactly(length)
    return status


async def _loop(port: int, requests: list[bytes], seconds: float, connections: int,
                payload: int) -> float:
    """Bytes of payload moved per second (each request carries `payload` bytes)."""
    done = 0
    stop = time.monotonic() + seconds

    async def worker(offset: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        i = offset
        try:
            while time.monotonic() < stop:
                writer.write(requests[i % len(requests)])
                status = await _read_response(reader)
                if status != 200:
                    raise RuntimeError(f"HTTP {status}")
                done += 1
                i += 1
        finally:
            writer.close()

    started = time.monotonic()
    await asyncio.gather(*(worker(k) for k in range(connections)))
    return done * payload / (time.monotonic() - started), done / (time.monotonic() - started)


def _setup(port: int, size: int) -> None:
    async def create() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(_request("PUT", "/bench", port))
        await _read_response(reader)
        for k in range(KEYS):
            writer.write(_request("PUT", f"/bench/k{size}-{k}", port, os.urandom(size)))
            await _read_response(reader)
        writer.close()

    asyncio.run(create())


PHASES = [(size, connections, name) for size in (4096, 1024 * 1024)
          for connections in (1, 16) for name in ("PUT", "GET")]


def _phase_requests(port: int, size: int) -> dict[str, list[bytes]]:
    body = os.urandom(size)
    return {"PUT": [_request("PUT", f"/bench/k{size}-{k}", port, body) for k in range(KEYS)],
            "GET": [_request("GET", f"/bench/k{size}-{k}", port) for k in range(KEYS)]}


def measure(servers: list[str], seconds: float, rounds: int) -> dict[str, list[tuple]]:
    """Both servers run at once and take turns phase by phase, `rounds` times, best kept:
    on a shared, noisy machine this compares them under the same load."""
    results: dict[str, list[tuple]] = {s: [] for s in servers}
    with contextlib.ExitStack() as stack:
        ports = {s: stack.enter_context(gateway(s))[0] for s in servers}
        for port in ports.values():
            for size in (4096, 1024 * 1024):
                _setup(port, size)
        requests = {s: {size: _phase_requests(p, size) for size in (4096, 1024 * 1024)}
                    for s, p in ports.items()}
        for size, connections, name in PHASES:
            best = {s: (0.0, 0.0) for s in servers}
            for _ in range(rounds):
                for server in servers:
                    rate, ops = asyncio.run(_loop(ports[server], requests[server][size][name],
                                                  seconds, connections, size))
                    best[server] = max(best[server], (rate, ops))
            for server in servers:
                rate, ops = best[server]
                results[server].append((f"{name} {size // 1024} KiB x{connections}", ops,
                                        rate / 1e6))
    return results


def _servers_available(servers: list[str]) -> list[str]:
    return [s for s in servers if s != "granian" or importlib.util.find_spec("granian")]


def run() -> list[dict]:
    """`python -m bench s3_front`: one row per phase and server, with the share of this
    machine's loopback TCP limit (from bench.limits, same run)."""
    from bench.limits import measure as machine_limits

    loopback = machine_limits().loopback_tcp
    servers = _servers_available(["uvicorn", "granian"])
    results = measure(servers, seconds=1.5, rounds=1)
    rows = []
    for server, phases in results.items():
        for phase, ops, mbs in phases:
            rows.append({"server": server, "phase": phase, "op/s": round(ops, 1),
                         "MB/s": round(mbs, 1), "% loopback": round(100 * mbs / loopback, 1)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--servers", default="uvicorn,granian")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args(argv)
    from bench.limits import loopback_tcp

    limit = max(loopback_tcp() for _ in range(3))
    print(f"loopback TCP limit: {limit:,.0f} MB/s")
    servers = _servers_available(args.servers.split(","))
    results = measure(servers, args.seconds, args.rounds)
    names = list(results)
    print(f"{'phase':<22}" + "".join(f"{n + ' op/s':>16}{n + ' MB/s':>16}" for n in names)
          + "   MB/s as % of loopback")
    for i, (phase, _, _) in enumerate(next(iter(results.values()), [])):
        cells = "".join(f"{results[n][i][1]:>16,.0f}{results[n][i][2]:>16,.1f}" for n in names)
        ratios = " / ".join(f"{100 * results[n][i][2] / limit:.1f}%" for n in names)
        print(f"{phase:<22}{cells}   {ratios}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
