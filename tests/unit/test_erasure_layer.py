"""The erasure object layer over in-process nodes: round trips, ranges, quorum loss, rollback,
bitrot, stalls and aborted bodies (real node processes: tests/integration)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time

import grpc
import pytest

from gateway.crypto.envelope import SealedObject
from gateway.crypto.keys import seal_object_key
from gateway.crypto.metadata import EncryptionMetadata
from gateway.erasure import BLOCK_SIZE
from gateway.objects import errors as oe
from gateway.objects.api import PutMetadata, SSEParams
from gateway.objects.encryption import ObjectSealing
from gateway.objects.get import ErasureObjectReader
from gateway.objects.put import put_stream
from gateway.objects.versions import read_version
from gateway.storage_client import NodeCallError

from .memory_cluster import body, memory_layer, read_all

SMALL_BLOCK = 4 * 4096  # small blocks keep these tests fast; geometry is the same maths
META = PutMetadata(content_type="text/plain", user_metadata={"colour": "blue"})


def run(coro):
    return asyncio.run(coro)


def small_layer(**kw):
    kw.setdefault("block_size", SMALL_BLOCK)
    kw.setdefault("inline_limit", 1024)
    return memory_layer(**kw)


async def put(layer, key: str, data: bytes, **kw):
    return await layer.put_object("b", key, body(data, kw.pop("chunk", 5000)), size=len(data),
                                  metadata=META, **kw)


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, SMALL_BLOCK - 1, SMALL_BLOCK,
                                  SMALL_BLOCK + 1, 3 * SMALL_BLOCK + 17])
def test_round_trip_sizes(size):
    async def go():
        layer, _, heal = small_layer()
        await layer.make_bucket("b")
        data = os.urandom(size)
        info = await put(layer, "k", data)
        assert info.etag == hashlib.md5(data).hexdigest() and info.size == size
        assert await read_all(layer, "b", "k") == data
        reader = await layer.open_object("b", "k")
        assert reader.info.metadata == META and reader.info.version_id == info.version_id
        assert heal.items() == []
    run(go())


def test_full_size_blocks_and_inline_objects():
    async def go():
        layer, nodes, _ = memory_layer()
        await layer.make_bucket("b")
        small = os.urandom(200_000)  # 50 KB shards: inline in the metadata
        big = os.urandom(2 * BLOCK_SIZE + 3)
        await put(layer, "small", small)
        await put(layer, "big", big, chunk=65536)
        assert all(not n.pending for n in nodes.values())
        assert await read_all(layer, "b", "small") == small
        assert await read_all(layer, "b", "big") == big
        record = next(iter(nodes["node-1"].keys[("b", "small")].values())).record
        assert record.is_inline and not record.parts
    run(go())


def test_ranges_at_block_boundaries():
    async def go():
        layer, _, _ = small_layer()
        await layer.make_bucket("b")
        data = os.urandom(4 * SMALL_BLOCK + 100)
        await put(layer, "k", data)
        for start, length in [(0, 1), (SMALL_BLOCK - 1, 2), (SMALL_BLOCK, SMALL_BLOCK),
                              (2 * SMALL_BLOCK - 5, SMALL_BLOCK + 10), (len(data) - 1, 1),
                              (len(data) - 100, None), (5, 0), (len(data), 10),
                              (len(data) - 3, 100)]:
            want = data[start:] if length is None else data[start:start + length]
            assert await read_all(layer, "b", "k", start, length) == want, (start, length)
    run(go())


def test_m_nodes_down_reads_and_writes_succeed():
    async def go():
        layer, nodes, heal = small_layer()
        await layer.make_bucket("b")
        data = os.urandom(2 * SMALL_BLOCK + 5)
        await put(layer, "k", data)
        nodes["node-1"].down = nodes["node-2"].down = True
        assert await read_all(layer, "b", "k") == data
        other = os.urandom(SMALL_BLOCK * 3)
        await put(layer, "k2", other)
        assert await read_all(layer, "b", "k2") == other
        await put(layer, "tiny", b"abc")
        assert await read_all(layer, "b", "tiny") == b"abc"
        healed = {i.key for i in heal.items()}
        assert {"k2", "tiny"} <= healed
    run(go())


def test_m_plus_one_down_fails_cleanly_and_leaves_nothing():
    async def go():
        layer, nodes, _ = small_layer()
        await layer.make_bucket("b")
        old = os.urandom(3 * SMALL_BLOCK)
        await put(layer, "k", old)
        for n in ("node-2", "node-4", "node-6"):
            nodes[n].down = True
        with pytest.raises(oe.InsufficientWriteQuorum, match="3 of 6"):
            await put(layer, "k", os.urandom(3 * SMALL_BLOCK))
        with pytest.raises(oe.InsufficientWriteQuorum):
            await put(layer, "new", b"small")
        with pytest.raises(oe.InsufficientReadQuorum):
            await read_all(layer, "b", "k")
        for n in nodes.values():
            n.down = False
        assert await read_all(layer, "b", "k") == old
        with pytest.raises(oe.ObjectNotFound):
            await layer.open_object("b", "new")
        assert all(not n.pending for n in nodes.values())
    run(go())


def test_commit_below_quorum_rolls_back():
    async def go():
        layer, nodes, _ = small_layer()
        await layer.make_bucket("b")
        old = os.urandom(SMALL_BLOCK * 2)
        await put(layer, "k", old)
        for n in ("node-1", "node-3", "node-5"):
            nodes[n].fail_next["CommitObject"] = NodeCallError(n, grpc.StatusCode.INTERNAL,
                                                               "IOError")
        with pytest.raises(oe.InsufficientWriteQuorum):
            await put(layer, "k", os.urandom(SMALL_BLOCK * 2))
        assert await read_all(layer, "b", "k") == old
        assert all(len(n.keys[("b", "k")]) == 1 for n in nodes.values())  # new one undone
        assert all(not n.pending for n in nodes.values())
    run(go())


@pytest.mark.parametrize(("size", "write_once", "call"), [
    (SMALL_BLOCK // 2, True, "WriteShardOnce"), (SMALL_BLOCK // 2, False, "WriteShard"),
    (SMALL_BLOCK * 5 + 3, True, "WriteShard")])
def test_streamed_put_commits_at_the_end_of_each_stream(size, write_once, call):
    """One round trip per node (a one-block object: one WriteShardOnce call): no separate
    CommitObject; a node whose commit fails is missed (healed later) while a write quorum
    committed."""
    async def go():
        layer, nodes, heal = small_layer(write_once=write_once)
        await layer.make_bucket("b")
        for n in nodes.values():
            n.calls.clear()
        data = os.urandom(size)
        nodes["node-2"].fail_next["CommitObject"] = NodeCallError("node-2",
                                                                  grpc.StatusCode.INTERNAL)
        info = await put(layer, "k", data)
        assert all(n.calls == [call] for n in nodes.values())
        assert await read_all(layer, "b", "k") == data
        assert [(i.version_id, i.nodes) for i in heal.items()] == [(info.version_id,
                                                                     ("node-2",))]
        assert info.version_id not in nodes["node-2"].keys.get(("b", "k"), {})
    run(go())


def test_corrupt_block_is_decoded_around_and_queued_for_healing():
    async def go():
        layer, nodes, heal = small_layer()
        await layer.make_bucket("b")
        data = os.urandom(3 * SMALL_BLOCK)
        info = await put(layer, "k", data)
        reader = await layer.open_object("b", "k")
        holder = reader.chosen.meta.erasure.distribution[0]  # a data shard: forces a decode
        nodes[holder].corrupt_block("b", "k", 1, 1)
        assert await read_all(layer, "b", "k") == data
        items = [i for i in heal.items() if i.reason == "read-corrupt"]
        assert items and items[0].nodes == (holder,) and items[0].version_id == info.version_id
    run(go())


def test_paused_node_costs_one_bounded_wait():
    async def go():
        layer, nodes, _ = small_layer()
        await layer.make_bucket("b")
        data = os.urandom(2 * SMALL_BLOCK)
        await put(layer, "k", data)
        reader = await layer.open_object("b", "k")
        nodes[reader.chosen.meta.erasure.distribution[1]].paused = True
        started = time.monotonic()
        assert await read_all(layer, "b", "k") == data
        await put(layer, "k2", data)
        assert await read_all(layer, "b", "k2") == data
        assert time.monotonic() - started < 2.0  # idle timeout is 0.3 s
    run(go())


def test_body_that_raises_leaves_nothing():
    class ClientGone(Exception):
        pass

    async def broken():
        yield os.urandom(SMALL_BLOCK * 2)
        raise ClientGone

    async def go():
        layer, nodes, _ = small_layer()
        await layer.make_bucket("b")
        with pytest.raises(ClientGone):
            await layer.put_object("b", "k", broken(), size=None, metadata=META)
        with pytest.raises(oe.ObjectNotFound):
            await layer.open_object("b", "k")
        assert all(not n.pending for n in nodes.values())
    run(go())


def test_digest_and_size_checks():
    async def go():
        layer, nodes, _ = small_layer()
        await layer.make_bucket("b")
        data = os.urandom(3 * SMALL_BLOCK)
        with pytest.raises(oe.BadDigest):
            await put(layer, "k", data, expected_md5=hashlib.md5(b"other").digest())
        with pytest.raises(oe.IncompleteBody):
            await layer.put_object("b", "k", body(data), size=len(data) + 1, metadata=META)
        with pytest.raises(oe.InvalidInput):
            await layer.put_object("b", "k", body(data), size=len(data) - 1, metadata=META)
        with pytest.raises(oe.ObjectNotFound):
            await layer.open_object("b", "k")
        assert all(not n.pending for n in nodes.values())
        info = await put(layer, "k", data, expected_md5=hashlib.md5(data).digest())
        assert info.size == len(data)
    run(go())


def test_overwrite_delete_and_versions():
    async def go():
        layer, _, _ = small_layer()
        await layer.make_bucket("b")
        first = await put(layer, "k", b"one")
        second = await put(layer, "k", b"two")
        assert second.version_id > first.version_id
        assert await read_all(layer, "b", "k") == b"two"
        old = await layer.open_object("b", "k", version_id=first.version_id)
        assert b"".join([c async for c in old.stream()]) == b"one"
        await layer.delete_object("b", "k")
        with pytest.raises(oe.ObjectNotFound):
            await layer.open_object("b", "k")
        await layer.delete_object("b", "never-existed")
        with pytest.raises(oe.VersionNotFound):
            await layer.open_object("b", "k", version_id="0190d5b2-0000-7000-8000-000000000000")
        with pytest.raises(oe.BucketNotFound):
            await layer.open_object("nope", "k")
        with pytest.raises(oe.BucketNotFound):
            await layer.put_object("nope", "k", body(b"x"), size=1, metadata=META)
    run(go())


def test_update_metadata_rewrites_in_place():
    async def go():
        layer, _, _ = small_layer()
        await layer.make_bucket("b")
        info = await put(layer, "k", b"data")
        same = await layer.update_metadata("b", "k", info.version_id)
        assert same.etag == info.etag and same.version_id == info.version_id
        with pytest.raises(oe.InvalidInput):
            await layer.update_metadata("b", "k", info.version_id,
                                        rewrap=SSEParams(mode="SSE-S3"))
    run(go())


@pytest.mark.parametrize("size", [100, 3 * SMALL_BLOCK])
def test_holders_not_waited_for_are_asked_when_a_shard_fails(size):
    async def go():
        layer, nodes, heal = small_layer()
        await layer.make_bucket("b")
        data = os.urandom(size)
        await put(layer, "k", data)
        dist = (await layer.open_object("b", "k")).chosen.meta.erasure.distribution
        for slow in dist[4:]:  # the parity holders answer late: the choice is made without them
            nodes[slow].delay["ReadMeta"] = 0.1
        if size > 100:
            nodes[dist[2]].corrupt_block("b", "k", 1, 0)
        else:  # an inline shard damaged in the metadata
            record = next(iter(nodes[dist[2]].keys[("b", "k")].values())).record
            record.inline_shard = b"X" + record.inline_shard[1:]
        reader = await layer.open_object("b", "k")
        assert set(reader.chosen.holders) == set(dist[:4])
        assert b"".join([c async for c in reader.stream()]) == data
        assert any(i.reason == "read-corrupt" and i.nodes == (dist[2],) for i in heal.items())
    run(go())


def test_a_read_asks_the_data_shard_holders_first():
    """A healthy GET asks k nodes; a newer version seen on some of them makes it ask the
    rest before choosing; a slow one among them costs a hedge delay, not its whole delay."""
    async def go():
        layer, nodes, _ = small_layer()
        await layer.make_bucket("b")
        old, new = os.urandom(3 * SMALL_BLOCK), os.urandom(2 * SMALL_BLOCK)
        await put(layer, "k", old)
        dist = (await layer.open_object("b", "k")).chosen.meta.erasure.distribution
        for n in nodes.values():
            n.calls.clear()
        assert await read_all(layer, "b", "k") == old
        assert [n for n in dist if "ReadMeta" in nodes[n].calls] == list(dist[:4])
        nodes[dist[0]].delay["ReadMeta"] = 2.0
        started = time.monotonic()
        reader = await layer.open_object("b", "k")
        assert time.monotonic() - started < 0.8  # the hedge asked the parity holders
        assert b"".join([c async for c in reader.stream()]) == old
        del nodes[dist[0]].delay["ReadMeta"]
        # the newer version lands on data holders 0-1 and both parity holders only
        for n in dist[2:4]:
            nodes[n].fail_next["WriteShard"] = NodeCallError(n, grpc.StatusCode.INTERNAL)
        await put(layer, "k", new)
        for n in nodes.values():
            n.calls.clear()
        assert await read_all(layer, "b", "k") == new
        assert all("ReadMeta" in n.calls for n in nodes.values())
    run(go())


@pytest.mark.parametrize("blocks", [1, 7])
def test_read_ahead_brings_the_start_with_the_metadata(blocks):
    """open_object(read_ahead=True): a one-block object needs no shard stream at all; a
    longer one streams only what follows its head; a rotten head block is decoded around."""
    async def go():
        layer, nodes, heal = small_layer(head_bytes=4 * SMALL_BLOCK // 4)  # 4 blocks a node
        await layer.make_bucket("b")
        data = os.urandom(blocks * SMALL_BLOCK - 5)
        await put(layer, "k", data)
        for n in nodes.values():
            n.calls.clear()
        reader = await layer.open_object("b", "k", read_ahead=True)
        assert b"".join([c async for c in reader.stream()]) == data
        streams = sum(n.calls.count("ReadShardBlocks") for n in nodes.values())
        assert streams == (0 if blocks == 1 else 4)
        holder = reader.chosen.meta.erasure.distribution[1]
        nodes[holder].corrupt_block("b", "k", 1, 0)
        reader = await layer.open_object("b", "k", read_ahead=True)
        assert b"".join([c async for c in reader.stream()]) == data
        assert any(i.reason == "read-corrupt" and holder in i.nodes for i in heal.items())
        assert b"".join([c async for c in reader.stream(3, 100)]) == data[3:103]
    run(go())


@pytest.mark.parametrize("chunk", [1, 777, SMALL_BLOCK, SMALL_BLOCK + 1, 3 * SMALL_BLOCK + 5])
def test_any_chunking_of_the_body(chunk):
    async def go():
        layer, _, _ = small_layer()
        await layer.make_bucket("b")
        data = os.urandom(4 * SMALL_BLOCK + 3 if chunk > 1 else 3000)

        async def mutable_chunks():  # a producer that reuses its buffer
            buf = bytearray(chunk)
            for i in range(0, len(data), chunk):
                piece = data[i:i + chunk]
                buf[:len(piece)] = piece
                yield memoryview(buf)[:len(piece)]
        await layer.put_object("b", "k", mutable_chunks(), size=len(data), metadata=META)
        assert await read_all(layer, "b", "k") == data
    run(go())


def test_concurrent_writers_to_one_key_never_mix():
    async def go():
        layer, _, _ = small_layer()
        await layer.make_bucket("b")
        blobs = [bytes([i]) * (3 * SMALL_BLOCK + i) for i in range(8)]
        infos = await asyncio.gather(*(put(layer, "k", b) for b in blobs))
        got = await read_all(layer, "b", "k")
        assert got in blobs
        latest = max(infos, key=lambda i: i.version_id)
        assert got == blobs[infos.index(latest)]  # the highest version id wins
    run(go())


def test_cluster_probe_and_statistics():
    async def go():
        layer, nodes, _ = small_layer()
        assert (await layer.probe_cluster()).ok
        nodes["node-1"].down = True
        nodes["node-2"].down = True
        health = await layer.probe_cluster()
        assert health.ok and health.sets[0].offline == ("node-1", "node-2")
        nodes["node-3"].down = True
        assert not (await layer.probe_cluster()).ok
        stats = layer.statistics()
        assert {s.name for s in stats.nodes if s.state == "sidelined"} == {
            "node-1", "node-2", "node-3"}
        assert stats.heal_queue.queued == 0
    run(go())


class HoldBackSealer:
    """Like a package encryptor that keeps its last package until it knows it is final:
    returns the previous call's tail plus this block minus its own tail, and tags every
    call's output with a 7-byte marker (output sizes never match the erasure block)."""

    plain_block_size = SMALL_BLOCK

    def __init__(self):
        self.held = b""

    def seal(self, block: bytes, index: int, final: bool) -> bytes:
        data, self.held = self.held + block, b""
        if not final:
            data, self.held = data[:-100], data[-100:]
        return b"<%05d>" % index + data


@pytest.mark.parametrize("size", [0, 10, SMALL_BLOCK, 3 * SMALL_BLOCK + 5])
def test_sealer_output_is_recut_into_erasure_blocks(size):
    async def go():
        layer, _, _ = small_layer()
        await layer.make_bucket("b")
        data = os.urandom(size)
        sealer = HoldBackSealer()
        record = EncryptionMetadata(mode="SSE-C", sealed_key=seal_object_key(
            os.urandom(32), os.urandom(32), domain="SSE-C", bucket="b", key="k"))
        info = await put_stream(layer.ctx, "b", "k", body(data, 3000), size=size,
                                metadata=META, sealer=sealer,
                                encryption=ObjectSealing(SealedObject(b"", record)))
        expected = b""
        blocks = [data[i:i + SMALL_BLOCK] for i in range(0, size, SMALL_BLOCK)] or [b""]
        replay = HoldBackSealer()
        for i, block in enumerate(blocks):
            expected += replay.seal(block, i, i == len(blocks) - 1)
        eset = layer.ctx.placement.locate("b", "k")
        chosen = await read_version(layer.ctx, "b", "k", eset)
        assert chosen.meta.stored_size == len(expected) and info.encryption.mode == "SSE-C"
        reader = ErasureObjectReader(layer.ctx, info, chosen)
        assert b"".join([c async for c in reader.stream_stored()]) == expected
        mid = len(expected) // 2
        assert b"".join([c async for c in reader.stream_stored(mid, 50)]) == \
            expected[mid:mid + 50]

    run(go())
