"""Helpers for the server-side encryption tests on real clusters: endpoints, customer keys,
recognisable plaintext and a disk scanner, a shard forger (a malicious node), KES admin calls,
and extra gateway processes with their own environment."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import os
import sqlite3
import struct
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

from cluster.launcher import Cluster, free_port
from cluster.probes import probe_gateway
from common.bitrot import block_hash, hash_len
from kes.client import KESClient, KESConfig
from tests.integration.s3_gateway import S3Endpoint

ROOT = Path(__file__).resolve().parents[2]
RECORD = 32  # bytes per record of a marked pattern; any 64-byte window holds a whole one


def endpoint(cluster: Cluster, index: int = 0) -> S3Endpoint:
    access, secret = cluster.credentials
    gateway = cluster.by_role("gateway")[index]
    return S3Endpoint(cluster.gateway_url(index), cluster.gateway_url(index, https=True),
                      cluster.ca_path, access, secret, log=Path(gateway.log))


def customer(key: bytes, *, copy_source: bool = False) -> dict[str, str | bytes]:
    """boto3 arguments for an SSE-C key (boto3 base64-encodes it and adds the MD5)."""
    prefix = "CopySourceSSECustomer" if copy_source else "SSECustomer"
    return {f"{prefix}Algorithm": "AES256", f"{prefix}Key": key}


def ssec_headers(key: bytes, *, md5_of: bytes | None = None) -> dict[str, str]:
    """Raw SSE-C request headers; `md5_of` lets a test send the MD5 of something else."""
    return {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": base64.b64encode(key).decode(),
        "x-amz-server-side-encryption-customer-key-md5":
            base64.b64encode(hashlib.md5(key if md5_of is None else md5_of).digest()).decode(),
    }


def marked(marker: bytes, size: int, seed: int = 0) -> bytes:
    """`size` bytes of 32-byte records: an 8-byte marker, a counter and 16 random bytes. Any
    64-byte window of it contains a whole record, hence the marker: a disk that holds no
    marker holds no 64-byte window of this plaintext."""
    assert len(marker) == 8
    rng = os.urandom(16 * (size // RECORD + 1))
    out = bytearray()
    for i in range(size // RECORD + 1):
        out += marker + struct.pack("<Q", seed << 40 | i) + rng[16 * i:16 * i + 16]
    return bytes(out[:size])


def files_containing(cluster: Cluster, needle: bytes) -> list[str]:
    """Every file under every node's data directory (shards, SQLite db, WAL, temp) that
    contains `needle`."""
    found = []
    for node in cluster.by_role("node"):
        for path in sorted(Path(node.data_dir).rglob("*")):
            if path.is_file():
                with contextlib.suppress(FileNotFoundError):  # swept while we looked
                    if needle in path.read_bytes():
                        found.append(str(path))
    return found


def forge_shard_block(cluster: Cluster, bucket: str, key: str, shard_index: int,
                      block: int) -> str:
    """What a malicious node does: flip a byte of one stored shard block and write the block
    hash that matches the altered bytes, so that every hash check passes. Returns the node."""
    for node in cluster.by_role("node"):
        data = Path(node.data_dir)
        db = sqlite3.connect(f"file:{data / 'meta.db'}?mode=ro", uri=True)
        try:
            row = db.execute(
                "SELECT p.file_id, v.shard_block_size, v.hash_algorithm FROM versions v "
                "JOIN parts p USING (bucket, key, version_id) WHERE v.bucket = ? AND "
                "v.key = ? AND v.is_latest = 1 AND v.shard_index = ? AND p.part_number = 1",
                (bucket, key, shard_index)).fetchone()
        finally:
            db.close()
        if row is None:
            continue
        file_id, shard_block, algorithm = row
        path = data / "shards" / file_id[:2] / file_id
        stored = bytearray(path.read_bytes())
        digest = hash_len(algorithm)
        start = block * (digest + shard_block)
        body = start + digest
        stored[body + 100] ^= 0x01
        stored[start:body] = block_hash(algorithm, bytes(stored[body:body + shard_block]))
        path.write_bytes(bytes(stored))
        return node.name
    raise AssertionError(f"no node holds shard {shard_index} of {bucket}/{key}")


def kes_admin(cluster: Cluster, call: str, *args: str) -> object:
    """A KES call as the cluster admin (create_key, delete_key, list_keys, ...)."""
    meta = cluster.meta
    config = KESConfig(tuple(meta["kes_endpoints"]), cert_file=meta["admin_cert"],
                       key_file=meta["admin_key"], capath=meta["ca"])

    async def go() -> object:
        async with KESClient(config) as kes:
            return await getattr(kes, call)(*args)

    return asyncio.run(go())




def gateway_command(cluster: Cluster, state: Path) -> tuple[list[str], str, str]:
    """gateway-1's command line on fresh ports and state directory: (argv, http, https)."""
    argv = list(cluster.by_role("gateway")[0].argv)
    http, https = f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"
    for flag, value in (("--listen", http), ("--tls-listen", https), ("--state-dir", str(state))):
        argv[argv.index(flag) + 1] = value
    return argv, http, https


def gateway_env(cluster: Cluster, overrides: Mapping[str, str | None]) -> dict[str, str]:
    """gateway-1's environment (credentials included) with `overrides` (None removes)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "AWS_"))}
    env.update(cluster.by_role("gateway")[0].env)
    access, secret = cluster.credentials
    env.update({"MINIO_ROOT_USER": access, "MINIO_ROOT_PASSWORD": secret,
                "PYTHONUNBUFFERED": "1"})
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


@contextlib.contextmanager
def extra_gateway(cluster: Cluster, state: Path,
                  overrides: Mapping[str, str | None]) -> Iterator[S3Endpoint]:
    """Another gateway on the cluster's nodes with a changed environment; stopped by its pid."""
    state.mkdir(parents=True, exist_ok=True)
    argv, http, https = gateway_command(cluster, state)
    log = state / "gateway.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=gateway_env(cluster, overrides),
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not probe_gateway(http, 1.0).ok:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"gateway did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        access, secret = cluster.credentials
        yield S3Endpoint(f"http://{http}", f"https://{https}", cluster.ca_path, access, secret,
                         log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def gateway_refusal(cluster: Cluster, state: Path,
                    overrides: Mapping[str, str | None]) -> subprocess.CompletedProcess[str]:
    """Runs a gateway that is expected to refuse to start; bounded in time."""
    state.mkdir(parents=True, exist_ok=True)
    argv, _, _ = gateway_command(cluster, state)
    return subprocess.run(argv, cwd=ROOT, env=gateway_env(cluster, overrides),
                          capture_output=True, text=True, timeout=60, check=False)


def run_rotate(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "AWS_"))}
    return subprocess.run([sys.executable, "-m", "gateway.rotate", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
