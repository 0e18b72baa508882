"""`python -m cluster heal` and `python -m cluster corrupt`: operating on the cluster's data.

`heal` runs a full heal pass from the operator's machine, straight to the storage nodes with
the cluster-admin certificate (no gateway needed): buckets, then every key of every set.
`corrupt` flips one byte of a stored shard block on one node's disk (chaos tests, drills):
the file comes from the node's own InspectKey answer, so no path is guessed.
"""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from common import bitrot

from .launcher import Cluster, ClusterError

__all__ = ["corrupt_shard", "run_heal"]


def _layer(cluster: Cluster):
    from gateway.objects.erasure_layer import build_erasure_layer

    tls = cluster.meta.get("spec", {}).get("tls_nodes", True)
    cert, key = cluster.admin_cert()
    return build_erasure_layer(cluster.topology_path, node_cert=cert if tls else None,
                               node_key=key if tls else None,
                               node_ca=cluster.ca_path if tls else None,
                               parity=cluster.meta.get("spec", {}).get("parity"))


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{n} B"
        n /= 1024  # type: ignore[assignment]
    return f"{n} B"


def run_heal(cluster: Cluster, *, buckets: list[str] | None = None, deep: bool = False,
             concurrency: int = 4, verbose: bool = False) -> int:
    """Runs one full heal pass and prints what it repaired; exit status 0 when nothing failed
    (keys waiting for an offline node are listed, and are not failures)."""
    from gateway.healing import HealConfig, Healer, heal_pass

    config = HealConfig.from_env()  # the same TESSERA_HEAL_* settings a gateway reads

    if not cluster.records:
        raise ClusterError("no cluster here (run `make cluster`)")

    async def go():
        layer = _layer(cluster)
        try:
            healer = Healer(layer.ctx, dangling_grace=config.dangling_grace,
                            commit_window=config.commit_window)

            def show(result) -> None:
                if verbose and result.outcome != "healthy":
                    print(f"  {result.outcome:<8} {result.bucket}/{result.key} "
                          f"{', '.join(result.repaired)}")
            return await heal_pass(healer, buckets=buckets, deep=deep,
                                   concurrency=concurrency, on_result=show)
        finally:
            await layer.close()

    report = asyncio.run(go())
    c = report.counts
    rate = c.checked / report.seconds if report.seconds else 0.0
    print(f"heal pass{' (deep)' if deep else ''}: {c.checked} objects checked "
          f"in {report.seconds:.1f}s ({rate:.0f}/s)")
    for line in report.buckets_healed:
        print(f"  bucket re-created: {line}")
    print(f"  objects repaired:      {c.healed}")
    print(f"  shards rebuilt:        {c.shards_rebuilt} ({_size(c.bytes_rebuilt)})")
    print(f"  dangling rolled back:  {c.dangling_rolled_back}")
    print(f"  metadata fixed:        {c.meta_fixed}")
    print(f"  waiting (node offline): {len(report.deferred)}")
    for line in report.deferred[:20]:
        print(f"    {line}")
    print(f"  failures:              {len(report.failures)}")
    for line in report.failures[:20]:
        print(f"    {line}")
    return 1 if report.failures else 0


def _inspect(cluster: Cluster, node: str, bucket: str, key: str):
    import grpc

    from proto import storage_pb2 as pb
    from proto import storage_pb2_grpc as pb_grpc

    record = cluster.record(node)
    if record.role != "node":
        raise ClusterError(f"{node} is a {record.role}, not a storage node")
    cert, pkey = cluster.admin_cert()
    creds = grpc.ssl_channel_credentials(cluster.ca_path.read_bytes(), pkey.read_bytes(),
                                         cert.read_bytes())
    channel = grpc.secure_channel(record.address, creds) \
        if cluster.meta.get("spec", {}).get("tls_nodes", True) \
        else grpc.insecure_channel(record.address)
    try:
        reply = pb_grpc.StorageStub(channel).InspectKey(
            pb.InspectKeyRequest(bucket=bucket, key=key), timeout=10)
    except grpc.RpcError as exc:
        raise ClusterError(f"{node}: InspectKey {bucket}/{key}: {exc.code().name} "
                           f"{exc.details() or ''}".rstrip()) from None
    finally:
        channel.close()
    latest = next((v for v in reply.versions if v.is_latest), None)
    if latest is None:
        raise ClusterError(f"{node} holds no version of {bucket}/{key}")
    return latest


def corrupt_shard(cluster: Cluster, node: str, bucket: str, key: str, *, block: int = 0,
                  part: int = 1) -> str:
    """Flips one byte of block `block` of part `part` of the latest version's shard on `node`
    (inside the block's data, past its hash, so the stored hash no longer matches). An inline
    version's shard lives in the node's metadata database: the byte is flipped there. Returns
    a line saying what was changed."""
    latest = _inspect(cluster, node, bucket, key)
    version = latest.version
    if version.delete_marker:
        raise ClusterError(f"the latest version of {bucket}/{key} on {node} is a delete marker")
    data_dir = Path(cluster.record(node).data_dir)
    g = version.geometry
    if version.is_inline:
        return _corrupt_inline(data_dir, bucket, key, version.version_id, block,
                               g.shard_block_size)
    shard = next((s for s in latest.shards if s.part_number == part), None)
    if shard is None or not shard.present:
        raise ClusterError(f"{node} has no shard file for part {part} of {bucket}/{key}")
    blocks = -(-shard.shard_size // g.shard_block_size)
    if not 0 <= block < blocks:
        raise ClusterError(f"part {part} of {bucket}/{key} has blocks 0..{blocks - 1}")
    hash_len = bitrot.hash_len(g.hash)
    length = min(g.shard_block_size, shard.shard_size - block * g.shard_block_size)
    offset = block * (hash_len + g.shard_block_size) + hash_len + length // 2
    path = data_dir / shard.file
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))
    return (f"{node}: flipped byte {offset} of {shard.file} (part {part}, block {block} of "
            f"{bucket}/{key} version {version.version_id})")


def _corrupt_inline(data_dir: Path, bucket: str, key: str, version_id: str, block: int,
                    shard_block_size: int) -> str:
    with sqlite3.connect(data_dir / "meta.db", timeout=10) as conn:
        row = conn.execute("SELECT inline_shard FROM versions WHERE bucket = ? AND key = ? AND "
                           "version_id = ?", (bucket, key, version_id)).fetchone()
        if row is None or not row[0]:
            raise ClusterError(f"no inline shard bytes for {bucket}/{key} to corrupt")
        data = bytearray(row[0])
        offset = min(block * shard_block_size + shard_block_size // 2, len(data) - 1)
        data[offset] ^= 0xFF
        conn.execute("UPDATE versions SET inline_shard = ? WHERE bucket = ? AND key = ? AND "
                     "version_id = ?", (bytes(data), bucket, key, version_id))
    return (f"flipped byte {offset} of the inline shard of {bucket}/{key} version "
            f"{version_id} in {data_dir / 'meta.db'}")
