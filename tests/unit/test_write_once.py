"""One-block PUTs sent as one WriteShardOnce call per node (shard and commit together): the
same quorum, rollback and heal rules as the streamed write (real nodes: tests/integration)."""

from __future__ import annotations

import asyncio
import os

import grpc
import pytest

from gateway.objects import errors as oe
from gateway.objects.api import PutMetadata
from gateway.storage_client import NodeCallError

from .memory_cluster import body, memory_layer, read_all

BLOCK = 4 * 4096
ONE_BLOCK = BLOCK - 100  # shards of ~4 KiB: over the 1 KiB inline limit below
META = PutMetadata(content_type="application/octet-stream")


def _layer():
    return memory_layer(block_size=BLOCK, inline_limit=1024)


async def _put(layer, key: str, data: bytes, size: int | None = None):
    return await layer.put_object("b", key, body(data, 3000), size=size, metadata=META)


def _nothing_pending(nodes) -> bool:
    return all(not n.pending for n in nodes.values())


@pytest.mark.parametrize("declared", [True, False])
def test_one_call_per_node_and_bytes_back(declared):
    """With or without a declared size (aws-chunked): one call a node, no CommitObject."""
    async def go():
        layer, nodes, heal = _layer()
        await layer.make_bucket("b")
        data = os.urandom(ONE_BLOCK)
        for n in nodes.values():
            n.calls.clear()
        await _put(layer, "k", data, len(data) if declared else None)
        assert all(n.calls == ["WriteShardOnce"] for n in nodes.values())
        assert await read_all(layer, "b", "k") == data
        assert heal.items() == [] and _nothing_pending(nodes)
    asyncio.run(go())


@pytest.mark.parametrize("failure", ["error", "down", "paused"])
def test_a_node_failing_mid_call_is_healed_later(failure):
    """One node fails its call (an error, unreachable, stalled past the idle timeout): the
    PUT succeeds with the other five and the node goes on the heal queue."""
    async def go():
        layer, nodes, heal = _layer()
        await layer.make_bucket("b")
        bad = nodes["node-4"]
        if failure == "error":
            bad.fail_next["WriteShardOnce"] = NodeCallError("node-4", grpc.StatusCode.INTERNAL,
                                                            "IOError")
        elif failure == "down":
            bad.down = True
        else:
            bad.paused = True
        data = os.urandom(ONE_BLOCK)
        info = await _put(layer, "k", data, len(data))
        bad.down = bad.paused = False
        assert await read_all(layer, "b", "k") == data
        assert any(i.version_id == info.version_id and "node-4" in i.nodes
                   for i in heal.items())
        assert info.version_id not in bad.keys.get(("b", "k"), {})
    asyncio.run(go())


def test_below_write_quorum_rolls_back_and_leaves_nothing():
    async def go():
        layer, nodes, _ = _layer()
        await layer.make_bucket("b")
        old = os.urandom(ONE_BLOCK)
        await _put(layer, "k", old, len(old))
        for n in ("node-1", "node-3"):
            nodes[n].fail_next["WriteShardOnce"] = NodeCallError(n, grpc.StatusCode.INTERNAL,
                                                                 "IOError")
        nodes["node-5"].fail_next["CommitObject"] = NodeCallError(
            "node-5", grpc.StatusCode.INTERNAL, "IOError")  # its write stays staged
        with pytest.raises(oe.InsufficientWriteQuorum):
            await _put(layer, "k", os.urandom(ONE_BLOCK), ONE_BLOCK)
        assert await read_all(layer, "b", "k") == old
        assert all(len(n.keys[("b", "k")]) == 1 for n in nodes.values())  # new one undone
        assert _nothing_pending(nodes)
    asyncio.run(go())


def test_disk_full_below_quorum_answers_storage_full():
    async def go():
        layer, nodes, _ = _layer()
        await layer.make_bucket("b")
        for n in ("node-1", "node-3", "node-5"):
            nodes[n].fail_next["WriteShardOnce"] = NodeCallError(
                n, grpc.StatusCode.RESOURCE_EXHAUSTED, "DiskFull")
        with pytest.raises(oe.StorageFull):
            await _put(layer, "k", os.urandom(ONE_BLOCK), ONE_BLOCK)
        with pytest.raises(oe.ObjectNotFound):
            await layer.open_object("b", "k")
        assert _nothing_pending(nodes)
    asyncio.run(go())


def test_a_put_cancelled_during_the_calls_leaves_nothing():
    """The client goes away while the calls run: what landed is rolled back and aborted."""
    async def go():
        layer, nodes, _ = _layer()
        await layer.make_bucket("b")
        nodes["node-5"].delay["WriteShardOnce"] = 5.0
        task = asyncio.ensure_future(_put(layer, "k", os.urandom(ONE_BLOCK), ONE_BLOCK))
        await asyncio.sleep(0.2)  # the five quick nodes have committed, node-5 is slow
        assert all(n.calls[-1] == "WriteShardOnce" for n in nodes.values())
        assert sum(bool(n.keys.get(("b", "k"))) for n in nodes.values()) == 5
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(oe.ObjectNotFound):
            await layer.open_object("b", "k")
        assert all(not n.keys.get(("b", "k")) for n in nodes.values())
        assert _nothing_pending(nodes)
    asyncio.run(go())
