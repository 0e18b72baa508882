"""Object tags in the object layers: kept in the version's metadata blob, changed in place
(same data, same version, same modification time), refused without a write quorum."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from gateway.objects import errors as oe
from gateway.objects.api import PutMetadata
from gateway.objects.memory import MemoryObjectLayer
from gateway.objects.metadata import ObjectMeta
from gateway.objects.versions import read_version

from .memory_cluster import body, memory_layer, read_all

TAGGED = PutMetadata(content_type="text/plain", tags={"team": "search", "tier": "hot"})


def run(coro):
    return asyncio.run(coro)


def test_erasure_layer_changes_tags_in_place():
    async def go():
        layer, nodes, _ = memory_layer(inline_limit=0, block_size=4 * 4096)
        await layer.make_bucket("b")
        data = bytes(range(256)) * 100
        info = await layer.put_object("b", "k", body(data), size=len(data), metadata=TAGGED)
        assert await layer.object_tags("b", "k") == (info.version_id, TAGGED.tags)
        changed = await layer.update_metadata("b", "k", "", tags={"x": "1"})
        assert changed.version_id == info.version_id
        assert changed.last_modified_ns == info.last_modified_ns
        assert await layer.object_tags("b", "k", version_id=info.version_id) == (
            info.version_id, {"x": "1"})
        reader = await layer.open_object("b", "k")
        assert reader.info.metadata.tags == {"x": "1"}
        assert reader.info.metadata.content_type == "text/plain"
        await reader.close()
        assert await read_all(layer, "b", "k") == data
        # without a write quorum the change is refused and the old set stays
        for name in list(nodes)[:3]:
            nodes[name].down = True
        with pytest.raises(oe.QuorumError):
            await layer.update_metadata("b", "k", info.version_id, tags={})
        for name in list(nodes)[:3]:
            nodes[name].down = False
        assert (await layer.object_tags("b", "k"))[1] == {"x": "1"}
        await layer.delete_object("b", "k")
        with pytest.raises(oe.ObjectNotFound):
            await layer.object_tags("b", "k")
        with pytest.raises(oe.ObjectNotFound):
            await layer.update_metadata("b", "k", "", tags={})
    run(go())


def test_memory_layer_keeps_step():
    async def go():
        layer = MemoryObjectLayer()
        await layer.make_bucket("b")
        info = await layer.put_object("b", "k", body(b"abc"), size=3, metadata=TAGGED)
        assert await layer.object_tags("b", "k") == (info.version_id, TAGGED.tags)
        changed = await layer.update_metadata("b", "k", "", tags={})
        assert changed.last_modified_ns == info.last_modified_ns
        assert (await layer.object_tags("b", "k"))[1] == {}
        with pytest.raises(oe.ObjectNotFound):
            await layer.object_tags("b", "absent")
    run(go())


def test_untagged_blob_has_no_tag_field():
    layer, _, _ = memory_layer()

    async def go():
        await layer.make_bucket("b")
        await layer.put_object("b", "plain", body(b"x"), size=1, metadata=PutMetadata())
        await layer.put_object("b", "tagged", body(b"x"), size=1, metadata=TAGGED)
        plain = await read_version(layer.ctx, "b", "plain",
                                   layer.ctx.placement.locate("b", "plain"))
        tagged = await read_version(layer.ctx, "b", "tagged",
                                    layer.ctx.placement.locate("b", "tagged"))
        assert b'"tg"' not in plain.meta.to_bytes()
        assert ObjectMeta.from_bytes(tagged.meta.to_bytes()).metadata.tags == TAGGED.tags
    run(go())


def test_a_node_that_missed_a_metadata_change_is_queued_for_healing():
    async def go():
        layer, nodes, heal = memory_layer(inline_limit=0, block_size=4 * 4096)
        await layer.make_bucket("b")
        data = bytes(range(256)) * 100
        info = await layer.put_object("b", "k", body(data), size=len(data), metadata=TAGGED)
        assert heal.items() == []
        late = list(nodes)[5]
        nodes[late].fail_next["UpdateMeta"] = nodes[late]._error(
            grpc.StatusCode.UNAVAILABLE, "injected")
        await layer.update_metadata("b", "k", "", tags={"x": "1"})
        (item,) = heal.items()
        assert (item.key, item.version_id, item.reason, item.nodes) == (
            "k", info.version_id, "meta-stale", (late,))
    run(go())
