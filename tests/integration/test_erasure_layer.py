"""The erasure object layer driven in-process against six real node processes (mTLS gRPC).

One cluster serves the module; tests that kill or pause nodes bring them back before they end.
The S3 front's tests cover the HTTP path; these check bytes, quorum and healing end to end.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import signal
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from cluster.launcher import Cluster
from gateway.erasure import BLOCK_SIZE
from gateway.heal_queue import MemoryHealQueue
from gateway.objects import errors as oe
from gateway.objects.api import MIN_PART_SIZE, CompletedPart, PutMetadata
from gateway.objects.erasure_layer import ErasureObjectLayer, build_erasure_layer
from gateway.storage_client import Timeouts
from proto import storage_pb2 as pb
from tests.conftest import running_cluster
from tests.integration.layer_helpers import ensure_bucket, get, stopped

META = PutMetadata(content_type="application/octet-stream")
TIMEOUTS = Timeouts(unary=2.0, idle=2.0, stream=120.0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("erasure"), nodes=6, gateways=0, kes=0,
                         parity=2) as c:
        yield c


def layer_for(cluster: Cluster, heal: MemoryHealQueue | None = None) -> ErasureObjectLayer:
    cert, key = cluster.admin_cert()
    return build_erasure_layer(cluster.topology_path, node_cert=cert, node_key=key,
                               node_ca=cluster.ca_path, parity=2, heal_queue=heal,
                               timeouts=TIMEOUTS)


def run(cluster: Cluster, test, heal: MemoryHealQueue | None = None):
    async def go():
        layer = layer_for(cluster, heal)
        try:
            return await test(layer)
        finally:
            await layer.close()
    return asyncio.run(go())


async def body(data: bytes, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


async def put(layer: ErasureObjectLayer, bucket: str, key: str, data: bytes):
    return await layer.put_object(bucket, key, body(data), size=len(data), metadata=META)


SIZES = [0, 1, 1000, 524_288, 524_289, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1,
         2 * BLOCK_SIZE + 12_345]


def test_round_trips_and_ranges(cluster: Cluster):
    blobs = {f"size-{n}": os.urandom(n) for n in SIZES}
    blobs["random"] = os.urandom(random.randrange(3 * BLOCK_SIZE))

    async def test(layer: ErasureObjectLayer) -> None:
        await ensure_bucket(layer, "round")
        for key, data in blobs.items():
            info = await put(layer, "round", key, data)
            assert info.etag == hashlib.md5(data).hexdigest(), key
        for key, data in blobs.items():
            assert await get(layer, "round", key) == data, key
        big = blobs[f"size-{2 * BLOCK_SIZE + 12_345}"]
        for start, length in [(0, 1), (BLOCK_SIZE - 1, 2), (BLOCK_SIZE, BLOCK_SIZE),
                              (BLOCK_SIZE - 7, BLOCK_SIZE + 14), (len(big) - 10, 50)]:
            assert await get(layer, "round", f"size-{len(big)}", start, length) == \
                big[start:start + length], (start, length)
        head = await layer.open_object("round", "size-1000")
        assert head.info.size == 1000 and head.info.metadata == META
        for size in (10, 3 * BLOCK_SIZE):  # inline, and streamed shards the nodes refuse
            with pytest.raises(oe.BucketNotFound):
                await put(layer, "no-such-bucket", "k", os.urandom(size))
    run(cluster, test)


def test_multipart(cluster: Cluster):
    parts = [os.urandom(MIN_PART_SIZE), os.urandom(MIN_PART_SIZE + 3), os.urandom(777)]

    async def test(layer: ErasureObjectLayer) -> None:
        await ensure_bucket(layer, "multi")
        upload = await layer.create_multipart_upload("multi", "movie", metadata=META)
        done = []
        for number, data in enumerate(parts, 1):
            info = await layer.upload_part("multi", "movie", upload.upload_id, number, body(data),
                                           size=len(data))
            done.append(CompletedPart(number, info.etag))
        listed, _ = await layer.list_parts("multi", "movie", upload.upload_id)
        assert [(p.part_number, p.size) for p in listed] == [(1, len(parts[0])),
                                                            (2, len(parts[1])), (3, 777)]
        info = await layer.complete_multipart_upload("multi", "movie", upload.upload_id, done)
        md5s = b"".join(hashlib.md5(p).digest() for p in parts)
        assert info.etag == hashlib.md5(md5s).hexdigest() + "-3"
        whole = b"".join(parts)
        assert await get(layer, "multi", "movie") == whole
        edge = len(parts[0]) - 5
        assert await get(layer, "multi", "movie", edge, 10) == whole[edge:edge + 10]
        assert (await layer.list_multipart_uploads("multi"))[0] == []
    run(cluster, test)


def test_listing_two_thousand_keys(cluster: Cluster):
    names = sorted(f"{p}/{i:04d}" for i, p in zip(range(2000), ["a", "b", "c", "d"] * 500,
                                                   strict=True))

    async def test(layer: ErasureObjectLayer) -> None:
        await ensure_bucket(layer, "many")
        gate = asyncio.Semaphore(24)

        async def one(name: str) -> None:
            async with gate:
                await put(layer, "many", name, name.encode())
        await asyncio.gather(*(one(n) for n in names))
        await layer.delete_object("many", names[10])
        listed, start = [], ""
        while True:
            page = await layer.list_objects("many", start_after=start, limit=1000)
            listed += [o.key for o in page.objects]
            if not page.truncated:
                break
            start = page.objects[-1].key
        assert listed == names[:10] + names[11:]
        page = await layer.list_objects("many", prefix="c/", limit=1000)
        assert [o.key for o in page.objects] == [n for n in names if n.startswith("c/")]
        assert not page.truncated
    run(cluster, test)


def test_m_nodes_down_everything_still_works(cluster: Cluster):
    data = {k: os.urandom(n) for k, n in [("small", 3000), ("big", 2 * BLOCK_SIZE + 99)]}

    async def before(layer: ErasureObjectLayer) -> None:
        await ensure_bucket(layer, "deg")
        for key, blob in data.items():
            await put(layer, "deg", key, blob)
    run(cluster, before)
    heal = MemoryHealQueue()
    with stopped(cluster, "node-2", "node-5"):
        async def during(layer: ErasureObjectLayer) -> None:
            health = await layer.probe_cluster()
            assert health.ok and health.sets[0].offline == ("node-2", "node-5")
            for key, blob in data.items():
                assert await get(layer, "deg", key) == blob
            fresh = os.urandom(BLOCK_SIZE + 5)
            await put(layer, "deg", "written-degraded", fresh)
            assert await get(layer, "deg", "written-degraded") == fresh
            assert {o.key for o in (await layer.list_objects("deg")).objects} >= set(data)
        run(cluster, during, heal)
    assert any(i.key == "written-degraded" and set(i.nodes) == {"node-2", "node-5"}
               for i in heal.items())


def test_m_plus_one_down_fails_and_leaves_nothing(cluster: Cluster):
    old = os.urandom(BLOCK_SIZE + 1)

    async def before(layer: ErasureObjectLayer) -> None:
        await ensure_bucket(layer, "quorum")
        await put(layer, "quorum", "k", old)
    run(cluster, before)
    with stopped(cluster, "node-1", "node-3", "node-6"):
        async def during(layer: ErasureObjectLayer) -> None:
            assert not (await layer.probe_cluster()).ok
            with pytest.raises(oe.InsufficientWriteQuorum):
                await put(layer, "quorum", "k", os.urandom(BLOCK_SIZE + 1))
            with pytest.raises(oe.InsufficientWriteQuorum):
                await put(layer, "quorum", "new", b"tiny")
            with pytest.raises(oe.InsufficientReadQuorum):
                await get(layer, "quorum", "k")
        run(cluster, during)

    async def after(layer: ErasureObjectLayer) -> None:
        assert await get(layer, "quorum", "k") == old
        with pytest.raises(oe.ObjectNotFound):
            await layer.open_object("quorum", "new")
        assert [o.key for o in (await layer.list_objects("quorum")).objects] == ["k"]
    run(cluster, after)


def _shard_file(cluster: Cluster, node: str, bucket: str, key: str) -> Path:
    import grpc

    from proto import storage_pb2_grpc as pb_grpc

    cert, pkey = cluster.admin_cert()
    creds = grpc.ssl_channel_credentials(cluster.ca_path.read_bytes(), pkey.read_bytes(),
                                         cert.read_bytes())
    with grpc.secure_channel(cluster.record(node).address, creds) as channel:
        reply = pb_grpc.StorageStub(channel).InspectKey(
            pb.InspectKeyRequest(bucket=bucket, key=key), timeout=5)
    latest = next(v for v in reply.versions if v.is_latest)
    return Path(cluster.record(node).data_dir) / latest.shards[0].file


def test_corrupt_block_on_disk_is_read_around_and_queued(cluster: Cluster):
    data = os.urandom(3 * BLOCK_SIZE)
    heal = MemoryHealQueue()

    async def write(layer: ErasureObjectLayer) -> str:
        await ensure_bucket(layer, "rot")
        await put(layer, "rot", "k", data)
        reader = await layer.open_object("rot", "k")
        return reader.chosen.meta.erasure.distribution[0]
    holder = run(cluster, write)
    path = _shard_file(cluster, holder, "rot", "k")
    shard_block = -(-BLOCK_SIZE // 4)
    offset = (16 + shard_block) + 16 + 1000  # block 1 of the shard, past its 16-byte hash
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))

    async def read(layer: ErasureObjectLayer) -> None:
        assert await get(layer, "rot", "k") == data
    run(cluster, read, heal)
    assert any(i.reason == "read-corrupt" and i.nodes == (holder,) for i in heal.items()), \
        heal.items()


def test_paused_node_costs_a_bounded_wait(cluster: Cluster):
    data = os.urandom(BLOCK_SIZE + 3)

    async def before(layer: ErasureObjectLayer) -> str:
        await ensure_bucket(layer, "pause")
        await put(layer, "pause", "k", data)
        return (await layer.open_object("pause", "k")).chosen.meta.erasure.distribution[1]
    holder = run(cluster, before)
    with stopped(cluster, holder, sig=signal.SIGSTOP):
        async def during(layer: ErasureObjectLayer) -> None:
            for _ in range(2):
                started = time.monotonic()
                assert await get(layer, "pause", "k") == data
                await put(layer, "pause", f"k-{started}", data)
                assert await layer.list_objects("pause", limit=5)
                # one idle timeout (2 s) at most per request, never a stall
                assert time.monotonic() - started < 3 * TIMEOUTS.idle + 2
        run(cluster, during)
