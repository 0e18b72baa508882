"""MinIO's parity upgrade: the geometry a new object gets while nodes of its set are offline,
and that objects and multipart uploads written with it read back from their own record
(in-process nodes; real processes: tests/integration/test_parity_upgrade.py)."""

from __future__ import annotations

import asyncio
import os

import pytest

from gateway.objects.api import CompletedPart, PutMetadata
from gateway.objects.metadata import UploadMeta
from gateway.placement import ErasureSet, PlacementError, upgraded_parity, write_quorum

from .memory_cluster import body, memory_layer, read_all

SMALL_BLOCK = 4 * 4096
META = PutMetadata(content_type="application/octet-stream")


def small_layer(**kw):
    kw.setdefault("block_size", SMALL_BLOCK)
    kw.setdefault("inline_limit", 1024)
    return memory_layer(**kw)


@pytest.mark.parametrize(("size", "parity", "offline", "expected"), [
    (6, 2, 0, 2),  # nothing offline: unchanged
    (6, 2, 1, 3),  # 4+2 -> 3+3
    (6, 2, 2, 3),  # 4+2 -> 3+3: capped at half the set (k >= m)
    (6, 2, 6, 3),
    (4, 2, 1, 2),  # 2+2 is already at the cap: unchanged
    (5, 1, 1, 2),  # 4+1 -> 3+2
    (8, 2, 3, 4),  # 6+2 -> 4+4, not 3+5
    (16, 4, 2, 6),
    (6, 3, 1, 3),
    (3, 1, 1, 1),
    (1, 0, 1, 0),  # a set of one has nothing to trade
])
def test_upgraded_parity(size, parity, offline, expected):
    assert upgraded_parity(size, parity, offline) == expected
    assert upgraded_parity(size, parity, offline) <= max(size // 2, parity)


def test_upgraded_set_keeps_the_shard_order_and_never_needs_a_larger_write_quorum():
    for size in range(2, 17):
        for parity in range(0, size // 2 + 1):
            nodes = tuple(f"n{i}" for i in range(size))
            eset = ErasureSet(0, nodes, size - parity, parity)
            for offline in range(size + 1):
                up = eset.upgraded(offline)
                assert up.nodes == nodes and up.index == 0 and up.size == size
                assert up.data_shards >= up.parity_shards or up is eset
                assert up.write_quorum <= eset.write_quorum
                assert up.write_quorum == write_quorum(up.data_shards, up.parity_shards)
                assert up.read_quorum == up.data_shards
    same = ErasureSet(0, ("a", "b", "c", "d", "e", "f"), 4, 2)
    assert same.upgraded(0) is same
    upgraded = same.upgraded(1)
    assert (upgraded.data_shards, upgraded.parity_shards, upgraded.write_quorum) == (3, 3, 4)
    assert same.with_geometry(3, 3) == upgraded
    with pytest.raises(PlacementError):
        same.with_geometry(3, 2)


def test_write_set_counts_only_nodes_the_pool_already_sidelines():
    layer, nodes, _ = small_layer()
    ctx = layer.ctx
    eset = ctx.placement.locate("b", "k")
    assert ctx.write_set(eset) is eset and ctx.parity_upgrades == 0
    nodes[eset.nodes[0]].down = True  # down, but nobody has noticed yet
    assert ctx.write_set(eset) is eset
    ctx.pool.note_failure(eset.nodes[0], "test")
    assert (ctx.write_set(eset).data_shards, ctx.parity_upgrades) == (3, 1)
    ctx.pool.note_failure(eset.nodes[3], "test")
    assert ctx.write_set(eset).parity_shards == 3  # capped
    assert layer.statistics().parity_upgrades == 2


def test_upload_meta_records_its_geometry_and_reads_old_blobs():
    meta = UploadMeta(5, META, None, 3, 3)
    assert UploadMeta.from_bytes(meta.to_bytes()) == meta
    old = UploadMeta(5, META, None)
    assert b'"ec"' not in old.to_bytes()
    assert UploadMeta.from_bytes(old.to_bytes()).data_shards == 0


def _sideline(layer, nodes, name: str) -> None:
    nodes[name].down = True
    layer.ctx.pool.note_failure(name, "test")


@pytest.mark.parametrize("size", [0, 300, 2 * SMALL_BLOCK + 7])
def test_object_written_with_a_node_down_survives_m_more(size):
    """EC 4+2 with one node sidelined: written 3+3, so three nodes down still read it."""
    async def go():
        layer, nodes, heal = small_layer()
        await layer.make_bucket("b")
        eset = layer.ctx.placement.locate("b", "k")
        _sideline(layer, nodes, eset.nodes[1])
        data = os.urandom(size)
        info = await layer.put_object("b", "k", body(data, 5000), size=size, metadata=META)
        assert layer.ctx.parity_upgrades == 1
        reader = await layer.open_object("b", "k")
        erasure = reader.chosen.meta.erasure
        await reader.close()
        assert (erasure.data_shards, erasure.parity_shards) == (3, 3)
        assert erasure.distribution == eset.nodes  # same shard order as the set's
        assert {i.key for i in heal.items()} == {"k"}
        for name in eset.nodes[3:5]:
            nodes[name].down = True
        assert await read_all(layer, "b", "k") == data
        if size > 10:
            assert await read_all(layer, "b", "k", size // 3, size // 3) == \
                data[size // 3 : 2 * (size // 3)]
        for node in nodes.values():
            node.down = False
        assert info.size == size
    asyncio.run(go())


def test_no_node_offline_writes_the_configured_geometry():
    async def go():
        layer, _, _ = small_layer()
        await layer.make_bucket("b")
        await layer.put_object("b", "k", body(b"x" * 5000), size=5000, metadata=META)
        reader = await layer.open_object("b", "k")
        assert (reader.chosen.meta.erasure.data_shards, layer.ctx.parity_upgrades) == (4, 0)
        await reader.close()
    asyncio.run(go())


def test_multipart_geometry_is_fixed_at_create():
    """Created while a node is sidelined: every part and the object are 3+3, even after the
    node is back before the parts are sent (it lacks the upload, so it gets no shard until
    healed); the object then survives two more of its holders down."""
    async def go():
        layer, nodes, _ = small_layer()
        await layer.make_bucket("b")
        eset = layer.ctx.placement.locate("b", "mp")
        _sideline(layer, nodes, eset.nodes[0])
        upload = await layer.create_multipart_upload("b", "mp", metadata=META)
        nodes[eset.nodes[0]].down = False
        layer.ctx.pool.health[eset.nodes[0]].success()  # back and known to be back
        parts = [os.urandom(5 * 1024 * 1024), os.urandom(SMALL_BLOCK + 3)]
        done = []
        for number, data in enumerate(parts, 1):
            part = await layer.upload_part("b", "mp", upload.upload_id, number,
                                           body(data, 1 << 20), size=len(data))
            done.append(CompletedPart(number, part.etag))
        listed, _ = await layer.list_parts("b", "mp", upload.upload_id)
        assert [p.etag for p in listed] == [p.etag for p in done]
        await layer.complete_multipart_upload("b", "mp", upload.upload_id, done)
        assert layer.ctx.parity_upgrades == 1
        for name in (eset.nodes[1], eset.nodes[4]):
            nodes[name].down = True
        reader = await layer.open_object("b", "mp")
        assert (reader.chosen.meta.erasure.data_shards, reader.chosen.meta.erasure.parity_shards
                ) == (3, 3)
        await reader.close()
        assert await read_all(layer, "b", "mp") == b"".join(parts)
    asyncio.run(go())


def test_upload_holders_below_the_sets_read_quorum_still_complete():
    """EC 6+2 with three nodes sidelined: the upload is 4+4 on five nodes. Once the three are
    back (without the upload), GetUpload must ask for the upload's read quorum (4), not the
    set's (6), or the upload could never complete."""
    async def go():
        layer, nodes, _ = small_layer(nodes=8, parity=2)
        await layer.make_bucket("b")
        eset = layer.ctx.placement.locate("b", "mp2")
        back = eset.nodes[:3]
        for name in back:
            _sideline(layer, nodes, name)
        upload = await layer.create_multipart_upload("b", "mp2", metadata=META)
        for name in back:
            nodes[name].down = False
            layer.ctx.pool.health[name].success()
        data = os.urandom(3000)
        part = await layer.upload_part("b", "mp2", upload.upload_id, 1, body(data),
                                       size=len(data))
        await layer.complete_multipart_upload("b", "mp2", upload.upload_id,
                                              [CompletedPart(1, part.etag)])
        reader = await layer.open_object("b", "mp2")
        assert reader.chosen.meta.erasure.data_shards == 4
        await reader.close()
        assert await read_all(layer, "b", "mp2") == data
    asyncio.run(go())
