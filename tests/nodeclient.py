"""A small typed client of one storage node for tests: real gRPC, mTLS with cluster certs."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import grpc

from cluster.launcher import Cluster
from common import bitrot
from proto import storage_pb2 as pb
from proto import storage_pb2_grpc

__all__ = ["GEOMETRY", "NodeClient", "blocks_of", "geometry", "one_node", "reason", "uuid7"]

TIMEOUT = 20.0  # seconds: every call of a test is bounded
MAX_MESSAGE = 64 * 1024 * 1024


def uuid7() -> str:
    """A UUIDv7 as text: 48-bit unix milliseconds first, so text order is time order."""
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms << 80) | (0x7 << 76) | ((rand >> 64) & 0xFFF) << 64 | (0b10 << 62) | (
        rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def geometry(k: int = 4, m: int = 2, block_size: int = 64 * 1024,
             hash_algorithm: int = bitrot.XXH3_128) -> pb.Geometry:
    return pb.Geometry(data_shards=k, parity_shards=m, block_size=block_size,
                       shard_block_size=-(-block_size // k), hash=hash_algorithm)  # type: ignore


GEOMETRY = geometry()


def blocks_of(data: bytes, g: pb.Geometry = GEOMETRY) -> list[pb.ShardBlock]:
    """A shard's bytes cut into blocks, each with its hash."""
    size = g.shard_block_size
    chunks = [data[i:i + size] for i in range(0, len(data), size)]
    return [pb.ShardBlock(data=c, hash=bitrot.block_hash(g.hash, c)) for c in chunks]


def reason(err: grpc.RpcError) -> str:
    """The node's tessera-reason trailer of a failed call ('' when absent)."""
    for k, v in err.trailing_metadata() or ():  # type: ignore[attr-defined]
        if k == "tessera-reason":
            return v
    return ""


class NodeClient:
    """One channel to one node, with helpers that write, commit and read whole shards."""

    def __init__(self, channel: grpc.Channel):
        self.channel = channel
        self.stub = storage_pb2_grpc.StorageStub(channel)

    @classmethod
    def connect(cls, address: str, ca: Path | None = None, cert: Path | None = None,
                key: Path | None = None) -> NodeClient:
        options = [("grpc.max_receive_message_length", MAX_MESSAGE),
                   ("grpc.max_send_message_length", MAX_MESSAGE)]
        if ca is None:
            return cls(grpc.insecure_channel(address, options=options))
        creds = grpc.ssl_channel_credentials(
            ca.read_bytes(), key.read_bytes() if key else None, cert.read_bytes() if cert else None)
        return cls(grpc.secure_channel(address, creds, options=options))

    @classmethod
    def for_node(cls, cluster, name: str = "node-1") -> NodeClient:
        """A client of a cluster's node with the cluster-admin certificate."""
        cert, key = cluster.admin_cert()
        return cls.connect(cluster.record(name).address, cluster.ca_path, cert, key)

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- helpers ----

    def make_bucket(self, bucket: str) -> None:
        self.stub.MakeBucket(pb.MakeBucketRequest(bucket=bucket), timeout=TIMEOUT)

    def write_shard(self, bucket: str, key: str, data_id: str,
                    blocks: Iterable[pb.ShardBlock], g: pb.Geometry = GEOMETRY,
                    shard_index: int = 0, part_number: int = 1,
                    upload_id: str = "") -> pb.WriteShardReply:
        header = pb.ShardHeader(bucket=bucket, key=key, data_id=data_id,
                                part_number=part_number, upload_id=upload_id,
                                shard_index=shard_index, geometry=g)

        def messages() -> Iterator[pb.WriteShardMessage]:
            yield pb.WriteShardMessage(header=header)
            for b in blocks:
                yield pb.WriteShardMessage(block=b)

        return self.stub.WriteShard(messages(), timeout=TIMEOUT)

    def put(self, bucket: str, key: str, data: bytes, g: pb.Geometry = GEOMETRY,
            version_id: str | None = None, inline: bool = False, meta: bytes = b"",
            shard_index: int = 0) -> tuple[str, bool]:
        """Write one shard and commit it as a version: (version_id, is_latest)."""
        version_id = version_id or uuid7()
        request = pb.CommitObjectRequest(bucket=bucket, key=key, version_id=version_id,
                                         meta=meta, shard_index=shard_index, geometry=g)
        if inline:
            request.inline_shard = data
        else:
            data_id = str(uuid.uuid4())
            reply = self.write_shard(bucket, key, data_id, blocks_of(data, g), g, shard_index)
            assert reply.bytes == len(data)
            request.parts.add(part_number=1, data_id=data_id, shard_size=len(data))
        commit = self.stub.CommitObject(request, timeout=TIMEOUT)
        return version_id, commit.is_latest

    def put_once(self, bucket: str, key: str, data: bytes, g: pb.Geometry = GEOMETRY,
                 version_id: str | None = None, meta: bytes = b"",
                 shard_index: int = 0) -> tuple[str, bool]:
        """`put` in one WriteShardOnce call (shard and commit): (version_id, is_latest)."""
        version_id = version_id or uuid7()
        data_id = str(uuid.uuid4())
        header = pb.ShardHeader(bucket=bucket, key=key, data_id=data_id, part_number=1,
                                shard_index=shard_index, geometry=g)
        commit = pb.CommitObjectRequest(bucket=bucket, key=key, version_id=version_id,
                                        meta=meta, shard_index=shard_index, geometry=g)
        commit.parts.add(part_number=1, data_id=data_id, shard_size=len(data))
        reply = self.stub.WriteShardOnce(pb.WriteShardOnceRequest(
            header=header, blocks=pb.ShardBlocks(blocks=blocks_of(data, g)), commit=commit),
            timeout=TIMEOUT)
        assert reply.committed and reply.bytes == len(data)
        return version_id, reply.is_latest

    def delete_marker(self, bucket: str, key: str, version_id: str | None = None) -> str:
        version_id = version_id or uuid7()
        self.stub.CommitObject(pb.CommitObjectRequest(
            bucket=bucket, key=key, version_id=version_id, delete_marker=True), timeout=TIMEOUT)
        return version_id

    def read_blocks(self, bucket: str, key: str, version_id: str = "", part_number: int = 1,
                    start: int = 0, count: int = 0) -> list[pb.ShardBlock]:
        return list(self.stub.ReadShard(pb.ReadShardRequest(
            bucket=bucket, key=key, version_id=version_id, part_number=part_number,
            start_block=start, block_count=count), timeout=TIMEOUT))

    def read(self, bucket: str, key: str, version_id: str = "", part_number: int = 1,
             start: int = 0, count: int = 0) -> bytes:
        return b"".join(b.data for b in self.read_blocks(bucket, key, version_id, part_number,
                                                         start, count))

    def read_meta(self, bucket: str, key: str, version_id: str = "", max_versions: int = 1,
                  include_inline: bool = False) -> list[pb.ObjectVersion]:
        return list(self.stub.ReadMeta(pb.ReadMetaRequest(
            bucket=bucket, key=key, version_id=version_id, max_versions=max_versions,
            include_inline=include_inline), timeout=TIMEOUT).versions)

    def list_objects(self, bucket: str, prefix: str = "", start_after: str = "",
                     limit: int = 0, include_delete_markers: bool = False) -> list[str]:
        return [v.key for v in self.stub.ListObjects(pb.ListObjectsRequest(
            bucket=bucket, prefix=prefix, start_after=start_after, limit=limit,
            include_delete_markers=include_delete_markers), timeout=TIMEOUT)]

    def inspect(self, bucket: str, key: str, with_hashes: bool = False) -> pb.InspectKeyReply:
        return self.stub.InspectKey(pb.InspectKeyRequest(bucket=bucket, key=key,
                                                         with_hashes=with_hashes),
                                    timeout=TIMEOUT)

    def stat(self) -> pb.StatReply:
        return self.stub.Stat(pb.StatRequest(), timeout=TIMEOUT)


@contextlib.contextmanager
def one_node(root: Path, env: dict[str, str] | None = None,
             bucket: str | None = None) -> Iterator[tuple[Cluster, NodeClient]]:
    """A one-node cluster (launcher, mTLS) under `root` with extra node environment, and a
    client of it; `bucket` is created first when given. Everything stops on exit."""
    from tests.conftest import running_cluster

    saved = {k: os.environ.get(k) for k in env or {}}
    os.environ.update(env or {})  # the launcher hands its environment to the node
    try:
        with running_cluster(root, nodes=1, gateways=0, kes=0) as cluster, \
                NodeClient.for_node(cluster) as client:
            if bucket:
                client.make_bucket(bucket)
            yield cluster, client
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
