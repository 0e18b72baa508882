"""Healing against six real node processes (mTLS gRPC), driven in-process and through the
`python -m cluster heal|corrupt` commands.

One cluster serves the module (4 data + 2 parity shards, one set: every object lives on every
node). Each test proves a repair the way a user would: by reading every object back while m
*other* nodes are stopped, so the repaired node's shards are needed.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.launcher import Cluster
from cluster.processes import stop as stop_process
from gateway.erasure import BLOCK_SIZE, block_hash, encode_block
from gateway.healing import DurableHealQueue, Healer, QueuePolicy
from gateway.healing.scanner import Scanner
from gateway.healing.worker import HealWorker
from gateway.objects import errors as oe
from gateway.objects.api import MIN_PART_SIZE, CompletedPart, PutMetadata
from gateway.objects.erasure_layer import ErasureObjectLayer, build_erasure_layer
from gateway.objects.metadata import ObjectMeta
from gateway.objects.version_ids import new_version_id
from gateway.storage_client import Timeouts
from tests.conftest import running_cluster
from tests.integration.layer_helpers import ensure_bucket, get, stopped
from tests.nodeclient import NodeClient

ROOT = Path(__file__).resolve().parents[2]
META = PutMetadata(content_type="application/octet-stream")
TIMEOUTS = Timeouts(unary=2.0, idle=2.0, stream=120.0)
POLICY = QueuePolicy(settle=0.1, defer_base=0.3, defer_max=1.0, retry_base=0.5, retry_max=2.0)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("healing"), nodes=6, gateways=0, kes=0,
                         parity=2) as c:
        yield c


def layer_for(cluster: Cluster, queue: DurableHealQueue | None = None) -> ErasureObjectLayer:
    cert, key = cluster.admin_cert()
    return build_erasure_layer(cluster.topology_path, node_cert=cert, node_key=key,
                               node_ca=cluster.ca_path, parity=2, heal_queue=queue,
                               timeouts=TIMEOUTS, backoff=1.0)


def run(cluster: Cluster, test, queue: DurableHealQueue | None = None):
    async def go():
        layer = layer_for(cluster, queue)
        try:
            return await test(layer)
        finally:
            await layer.close()
    return asyncio.run(go())


def healer_for(layer: ErasureObjectLayer, **options: float) -> Healer:
    options.setdefault("commit_window", 0.0)  # nothing here races its own commit
    return Healer(layer.ctx, **options)


async def body(data: bytes):
    for i in range(0, len(data), 256 * 1024):
        yield data[i : i + 256 * 1024]
    if not data:
        return


async def put(layer: ErasureObjectLayer, bucket: str, key: str, data: bytes) -> str:
    return (await layer.put_object(bucket, key, body(data), size=len(data),
                                   metadata=META)).version_id


async def put_multipart(layer: ErasureObjectLayer, bucket: str, key: str,
                        parts: list[bytes]) -> None:
    upload = await layer.create_multipart_upload(bucket, key, metadata=META)
    done = []
    for number, data in enumerate(parts, 1):
        info = await layer.upload_part(bucket, key, upload.upload_id, number, body(data),
                                       size=len(data))
        done.append(CompletedPart(number, info.etag))
    await layer.complete_multipart_upload(bucket, key, upload.upload_id, done)


def node_client(cluster: Cluster, name: str) -> NodeClient:
    return NodeClient.for_node(cluster, name)


def latest_on(cluster: Cluster, node: str, bucket: str, key: str):
    with node_client(cluster, node) as client:
        return next((v for v in client.inspect(bucket, key).versions if v.is_latest), None)


def verify_ok(cluster: Cluster, node: str, bucket: str, key: str) -> bool:
    from proto import storage_pb2 as pb

    with node_client(cluster, node) as client:
        reply = client.stub.VerifyShard(pb.VerifyShardRequest(bucket=bucket, key=key),
                                        timeout=20)
    return reply.ok


def cli(cluster: Cluster, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    # objects written a moment ago are not commits in flight here: no settling wait
    env = {**os.environ, "TESSERA_HEAL_COMMIT_WINDOW": "0"}
    out = subprocess.run([sys.executable, "-m", "cluster", "--root", str(cluster.root), *args],
                         cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
                         env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    return out


def distribution(cluster: Cluster, bucket: str, key: str) -> tuple[str, ...]:
    async def test(layer: ErasureObjectLayer) -> tuple[str, ...]:
        reader = await layer.open_object(bucket, key)
        return reader.chosen.meta.erasure.distribution
    return run(cluster, test)


async def wait_drained(queue: DurableHealQueue, seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        counts = queue.counts()
        if counts.backlog == 0 and counts.in_flight == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"heal queue not drained: {queue.entries()}")


def drain(cluster: Cluster, queue: DurableHealQueue) -> Healer:
    async def test(layer: ErasureObjectLayer) -> Healer:
        healer = healer_for(layer)
        worker = HealWorker(healer, queue, concurrency=2, rate=0, poll=0.05)
        worker.start()
        try:
            await wait_drained(queue)
        finally:
            await worker.close()
        return healer
    return run(cluster, test, queue)


# ---- a node down while objects are written ----

def test_node_down_during_writes_is_healed_through_the_queue(cluster: Cluster):
    down, bucket = "node-3", "heal"
    blobs = {"two-blocks": os.urandom(BLOCK_SIZE + 5000), "one-block": os.urandom(600_000),
             "inline": os.urandom(3000), "empty": b"", "overwritten": os.urandom(700_000)}
    parts = [os.urandom(MIN_PART_SIZE), os.urandom(1234)]

    async def before(layer: ErasureObjectLayer) -> None:
        await ensure_bucket(layer, bucket)
        await put(layer, bucket, "overwritten", os.urandom(2000))
        await put(layer, bucket, "doomed", os.urandom(600_000))
    run(cluster, before)
    queue = DurableHealQueue(None, POLICY)
    with stopped(cluster, down):
        async def during(layer: ErasureObjectLayer) -> None:
            for key, data in blobs.items():
                await put(layer, bucket, key, data)
            await put_multipart(layer, bucket, "movie", parts)
            await layer.delete_object(bucket, "doomed")
        run(cluster, during, queue)
    written = {*blobs, "movie", "doomed"}
    assert {e.key for e in queue.entries()} == written
    assert all(e.nodes == (down,) for e in queue.entries())
    assert latest_on(cluster, down, bucket, "inline") is None

    # the scanner, with a queue of its own, finds exactly the keys the node missed
    scanned = DurableHealQueue(None, POLICY)

    async def scan(layer: ErasureObjectLayer) -> None:
        await Scanner(healer_for(layer), scanned, rate=0).cycle()
    run(cluster, scan)
    assert {e.key for e in scanned.entries() if e.bucket == bucket} == written
    scanned.close()

    healer = drain(cluster, queue)
    counters = healer.counters
    assert counters.healed == len(written) and counters.failed == 0
    # one shard per single object (file or inline), one per part, none for a delete marker
    assert counters.shards_rebuilt == len(blobs) + len(parts)
    for key in written:
        mine, theirs = latest_on(cluster, down, bucket, key), latest_on(cluster, "node-1",
                                                                        bucket, key)
        assert mine is not None and mine.version.version_id == theirs.version.version_id, key
        assert verify_ok(cluster, down, bucket, key), key
    queue.close()

    with stopped(cluster, "node-1", "node-5"):  # now node-3's shards are needed
        async def read(layer: ErasureObjectLayer) -> None:
            for key, data in blobs.items():
                assert await get(layer, bucket, key) == data, key
            assert await get(layer, bucket, "movie") == b"".join(parts)
            with pytest.raises(oe.ObjectNotFound):
                await layer.open_object(bucket, "doomed")
        run(cluster, read)


# ---- bitrot on disk ----

def test_corrupt_blocks_are_read_around_then_repaired(cluster: Cluster):
    bucket = "rot"
    big, small = os.urandom(3 * BLOCK_SIZE - 99), os.urandom(5000)
    parts = [os.urandom(MIN_PART_SIZE), os.urandom(BLOCK_SIZE + 10)]

    async def write(layer: ErasureObjectLayer) -> None:
        await ensure_bucket(layer, bucket)
        await put(layer, bucket, "big", big)
        await put(layer, bucket, "small", small)
        await put_multipart(layer, bucket, "parts", parts)
    run(cluster, write)
    nodes = list(distribution(cluster, bucket, "big"))
    rng = random.Random()
    # at most m shards of any block may go bad; one on a data shard, which every read fetches
    # (a parity shard is read only when a data shard fails: the deep scan below finds those)
    first = rng.choice(nodes[:len(nodes) - 2])
    hit = [first, rng.choice([n for n in nodes if n != first])]
    for node, block in zip(hit, rng.sample(range(3), 2), strict=True):
        cli(cluster, "corrupt", node, "--bucket", bucket, "--key", "big", "--block", str(block))
    inline_hit = rng.choice(nodes)
    cli(cluster, "corrupt", inline_hit, "--bucket", bucket, "--key", "small")
    part_hit = distribution(cluster, bucket, "parts")[0]  # a data shard: reads notice it
    before = latest_on(cluster, part_hit, bucket, "parts")
    cli(cluster, "corrupt", part_hit, "--bucket", bucket, "--key", "parts", "--part", "2",
        "--block", "1")
    assert not any(verify_ok(cluster, n, bucket, "big") for n in hit)
    assert not verify_ok(cluster, inline_hit, bucket, "small")
    assert not verify_ok(cluster, part_hit, bucket, "parts")

    queue = DurableHealQueue(None, POLICY)

    async def read(layer: ErasureObjectLayer) -> None:
        assert await get(layer, bucket, "big") == big
        assert await get(layer, bucket, "small") == small
        assert await get(layer, bucket, "parts") == b"".join(parts)
    run(cluster, read, queue)
    reported = {e.key: e for e in queue.entries()}
    assert reported["parts"].deep and part_hit in reported["parts"].nodes
    assert reported["big"].deep and first in reported["big"].nodes
    assert set(reported["big"].nodes) <= set(hit)
    drain(cluster, queue)
    queue.close()
    assert verify_ok(cluster, part_hit, bucket, "parts")
    # only the damaged part was rewritten: part 1's file is the same, part 2's is new
    after = latest_on(cluster, part_hit, bucket, "parts")
    assert after.version.version_id == before.version.version_id
    old_files = {s.part_number: s.file for s in before.shards}
    new_files = {s.part_number: s.file for s in after.shards}
    assert new_files[1] == old_files[1] and new_files[2] != old_files[2]
    assert not (Path(cluster.record(part_hit).data_dir) / old_files[2]).exists()

    # what reads did not touch (a parity shard, an inline shard) the deep scan finds
    deep = DurableHealQueue(None, POLICY)

    async def scan(layer: ErasureObjectLayer) -> Healer:
        healer = healer_for(layer)
        await Scanner(healer, deep, rate=0, deep_every=1, deep_rate=0).cycle()
        return healer
    run(cluster, scan)
    deep.close()
    for node in nodes:
        for key in ("big", "small", "parts"):
            assert verify_ok(cluster, node, bucket, key), (node, key)
    with stopped(cluster, *[n for n in nodes if n not in (*hit, inline_hit)][:2]):
        async def reread(layer: ErasureObjectLayer) -> None:
            assert await get(layer, bucket, "big") == big
            assert await get(layer, bucket, "small") == small
        run(cluster, reread)


# ---- dangling versions ----

def _commit_partial(cluster: Cluster, bucket: str, key: str, data: bytes,
                    holders: list[str]) -> str:
    """A version committed (inline) on fewer than k nodes, as a gateway that crashed in the
    middle of a commit would leave it."""
    async def current(layer: ErasureObjectLayer) -> ObjectMeta:
        return (await layer.open_object(bucket, key)).chosen.meta
    erasure = run(cluster, current).erasure
    geometry = erasure.geometry
    shards = encode_block(geometry, data)
    meta = ObjectMeta(size=len(data), etag=hashlib.md5(data).hexdigest(),
                      mod_time_ns=time.time_ns(), erasure=erasure, metadata=META,
                      inline_hashes=tuple(block_hash(geometry.hash_algorithm, s)
                                          for s in shards))
    version_id = new_version_id()
    from gateway.objects.context import geometry_message

    for node in holders:
        index = erasure.distribution.index(node)
        with node_client(cluster, node) as client:
            client.put(bucket, key, shards[index], geometry_message(geometry),
                       version_id=version_id, inline=True, meta=meta.to_bytes(),
                       shard_index=index)
    return version_id


def test_dangling_version_is_rolled_back_but_never_while_a_node_is_paused(cluster: Cluster):
    bucket, key = "dangle", "k"
    old = os.urandom(4000)

    async def before(layer: ErasureObjectLayer) -> str:
        await ensure_bucket(layer, bucket)
        return await put(layer, bucket, key, old)
    old_version = run(cluster, before)
    nodes = distribution(cluster, bucket, key)
    holders = list(nodes[:3])
    partial = _commit_partial(cluster, bucket, key, os.urandom(4000), holders)
    time.sleep(1.2)  # older than the grace below: no commit can still be in flight

    async def heal(layer: ErasureObjectLayer):
        return await healer_for(layer, dangling_grace=1.0).heal_object(bucket, key)

    paused = nodes[5]
    assert cli(cluster, "stop", paused).stdout.strip() == f"stop {paused}: paused"
    try:
        result = run(cluster, heal)
        assert result.outcome == "deferred" and result.offline == (paused,)
        assert result.rolled_back == () and result.waiting == (partial,)
        for node in holders:
            assert latest_on(cluster, node, bucket, key).version.version_id == partial

        async def read(layer: ErasureObjectLayer) -> None:
            # the paused node might hold the partial version's 4th shard (then it would be
            # an acknowledged write): serving the old bytes could undo it, so retryable 503
            with pytest.raises(oe.InsufficientReadQuorum):
                await get(layer, bucket, key)
        run(cluster, read)
    finally:
        assert cli(cluster, "resume", paused).stdout.strip() == f"resume {paused}: running"

    result = run(cluster, heal)
    assert result.outcome == "healed"
    assert result.rolled_back == ((partial, tuple(holders)),)
    for node in nodes:
        assert latest_on(cluster, node, bucket, key).version.version_id == old_version


# ---- a wiped disk ----

def test_wiped_node_is_rebuilt_by_cluster_heal(cluster: Cluster):
    bucket, victim = "wiped", "node-4"
    objects = {f"small/{i:03d}": os.urandom(20_000) for i in range(60)}
    objects.update({f"large/{i:03d}": os.urandom(700_000) for i in range(20)})

    async def write(layer: ErasureObjectLayer) -> None:
        await ensure_bucket(layer, bucket)
        gate = asyncio.Semaphore(8)

        async def one(key: str, data: bytes) -> None:
            async with gate:
                await put(layer, bucket, key, data)
        await asyncio.gather(*(one(k, d) for k, d in objects.items()))
    run(cluster, write)
    stop_process(cluster.record(victim))
    data_dir = Path(cluster.record(victim).data_dir)
    shutil.rmtree(data_dir)
    data_dir.mkdir()
    cluster.start(victim)
    with node_client(cluster, victim) as client:
        assert not client.stub.ListBuckets(pb_list_buckets(), timeout=10).buckets

    started = time.monotonic()
    out = cli(cluster, "heal").stdout
    seconds = time.monotonic() - started
    assert f"bucket re-created: {bucket} on {victim}" in out, out
    assert "failures:              0" in out, out
    shards = int(out.split("shards rebuilt:")[1].split()[0])
    assert shards >= len(objects), out
    print(f"\nwiped node: {shards} shards rebuilt by `cluster heal` in {seconds:.1f}s "
          f"({shards / seconds:.0f} shards/s) -- {out.splitlines()[0]}")
    for key in objects:
        assert verify_ok(cluster, victim, bucket, key), key
    with stopped(cluster, "node-1", "node-2"):
        async def read(layer: ErasureObjectLayer) -> None:
            for key, data in objects.items():
                assert await get(layer, bucket, key) == data, key
        run(cluster, read)


def pb_list_buckets():
    from proto import storage_pb2 as pb

    return pb.ListBucketsRequest()
