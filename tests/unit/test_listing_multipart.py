"""Listing merged across nodes and sets with quorum; multipart uploads; buckets."""

from __future__ import annotations

import asyncio
import hashlib
import os

import grpc
import pytest

from gateway.objects import errors as oe
from gateway.objects.api import MIN_PART_SIZE, CompletedPart, PutMetadata
from gateway.storage_client import NodeCallError
from proto import storage_pb2 as pb

from .memory_cluster import body, memory_layer, read_all

META = PutMetadata()


def run(coro):
    return asyncio.run(coro)


async def put(layer, key, data=b"x"):
    return await layer.put_object("b", key, body(data), size=len(data), metadata=META)


async def all_keys(layer, limit, prefix=""):
    keys, start = [], ""
    while True:
        page = await layer.list_objects("b", prefix=prefix, start_after=start, limit=limit)
        keys += [o.key for o in page.objects]
        if not page.truncated:
            return keys
        start = page.objects[-1].key


def test_listing_merges_sets_in_order_and_paginates():
    async def go():
        layer, _, _ = memory_layer(nodes=12, set_size=6)
        await layer.make_bucket("b")
        names = sorted(f"dir{i % 3}/key-{i:03d}" for i in range(60))
        for name in names:
            await put(layer, name)
        assert await all_keys(layer, 1000) == names
        assert await all_keys(layer, 7) == names
        assert await all_keys(layer, 5, prefix="dir1/") == [n for n in names
                                                           if n.startswith("dir1/")]
        page = await layer.list_objects("b", limit=3)
        assert page.truncated and page.objects[0].size == 1
        assert page.objects[0].etag == hashlib.md5(b"x").hexdigest()
    run(go())


def test_listing_hides_deleted_and_unquorate_keys_and_survives_nodes_down():
    async def go():
        layer, nodes, _ = memory_layer()
        await layer.make_bucket("b")
        for name in ("a", "b", "c", "d"):
            await put(layer, name)
        await layer.delete_object("b", "b")
        # "c" rewritten, but the new version reached only 2 nodes (its writer died): the old
        # version must still be listed, as GET would return it
        for n in ("node-3", "node-4", "node-5", "node-6"):
            nodes[n].down = True
        with pytest.raises(oe.InsufficientWriteQuorum):
            await put(layer, "c", b"newer")
        for n in ("node-3", "node-4", "node-5", "node-6"):
            nodes[n].down = False
        nodes["node-1"].down = nodes["node-2"].down = True
        page = await layer.list_objects("b")
        assert [(o.key, o.size) for o in page.objects] == [("a", 1), ("c", 1), ("d", 1)]
        nodes["node-3"].down = True
        with pytest.raises(oe.InsufficientReadQuorum):
            await layer.list_objects("b")
    run(go())


def test_listing_settles_stray_newer_versions_with_a_quorum_read():
    async def go():
        layer, nodes, _ = memory_layer()
        await layer.make_bucket("b")
        await put(layer, "k", b"old")
        # a stray newer version left on one node (a gateway died between commit and rollback)
        stray = next(iter(nodes["node-1"].keys[("b", "k")].values()))
        copy = type(stray)(record=type(stray.record)(), shards=stray.shards)
        copy.record.CopyFrom(stray.record)
        copy.record.version_id = "ffffffff-ffff-7fff-bfff-ffffffffffff"
        nodes["node-1"].keys[("b", "k")][copy.record.version_id] = copy
        nodes["node-2"].down = nodes["node-3"].down = True
        page = await layer.list_objects("b")
        assert [o.key for o in page.objects] == ["k"]
        assert await read_all(layer, "b", "k") == b"old"
    run(go())


def test_multipart_round_trip():
    async def go():
        layer, nodes, _ = memory_layer()
        await layer.make_bucket("b")
        upload = await layer.create_multipart_upload("b", "big", metadata=PutMetadata(
            content_type="video/mp4"))
        parts = [os.urandom(MIN_PART_SIZE), os.urandom(MIN_PART_SIZE + 5), os.urandom(1000)]
        infos = []
        for number, data in zip((1, 2, 4), parts, strict=True):
            infos.append(await layer.upload_part("b", "big", upload.upload_id, number,
                                                 body(data, 1 << 20), size=len(data)))
        # a re-upload of part 2 replaces the first attempt
        parts[1] = os.urandom(MIN_PART_SIZE + 7)
        infos[1] = await layer.upload_part("b", "big", upload.upload_id, 2,
                                           body(parts[1], 1 << 20), size=len(parts[1]))
        listed, truncated = await layer.list_parts("b", "big", upload.upload_id)
        assert [p.part_number for p in listed] == [1, 2, 4] and not truncated
        assert [p.etag for p in listed] == [hashlib.md5(p).hexdigest() for p in parts]
        page, truncated = await layer.list_parts("b", "big", upload.upload_id,
                                                 part_number_marker=1, limit=1)
        assert [p.part_number for p in page] == [2] and truncated
        uploads, _ = await layer.list_multipart_uploads("b")
        assert [u.upload_id for u in uploads] == [upload.upload_id]
        done = await layer.complete_multipart_upload(
            "b", "big", upload.upload_id,
            [CompletedPart(n, f'"{i.etag}"') for n, i in zip((1, 2, 4), infos, strict=True)])
        md5s = b"".join(hashlib.md5(p).digest() for p in parts)
        assert done.etag == f"{hashlib.md5(md5s).hexdigest()}-3"
        assert done.parts == tuple(len(p) for p in parts)
        whole = b"".join(parts)
        assert await read_all(layer, "b", "big") == whole
        mid = MIN_PART_SIZE - 10
        assert await read_all(layer, "b", "big", mid, 20) == whole[mid:mid + 20]
        reader = await layer.open_object("b", "big")
        assert reader.info.metadata.content_type == "video/mp4"
        assert (await layer.list_multipart_uploads("b"))[0] == []
        with pytest.raises(oe.UploadNotFound):
            await layer.list_parts("b", "big", upload.upload_id)
        assert all(not n.pending and not n.uploads for n in nodes.values())
    run(go())


def test_multipart_completion_checks():
    async def go():
        layer, _, _ = memory_layer()
        await layer.make_bucket("b")
        upload = await layer.create_multipart_upload("b", "k", metadata=META)
        uid = upload.upload_id
        small = await layer.upload_part("b", "k", uid, 1, body(b"tiny"), size=4)
        last = await layer.upload_part("b", "k", uid, 2, body(b"end"), size=3)
        with pytest.raises(oe.InvalidPartOrder):
            await layer.complete_multipart_upload("b", "k", uid, [
                CompletedPart(2, last.etag), CompletedPart(1, small.etag)])
        with pytest.raises(oe.InvalidPart):
            await layer.complete_multipart_upload("b", "k", uid, [CompletedPart(1, "0" * 32)])
        with pytest.raises(oe.InvalidPart):
            await layer.complete_multipart_upload("b", "k", uid, [CompletedPart(3, last.etag)])
        with pytest.raises(oe.EntityTooSmall):
            await layer.complete_multipart_upload("b", "k", uid, [
                CompletedPart(1, small.etag), CompletedPart(2, last.etag)])
        with pytest.raises(oe.BadDigest):
            await layer.upload_part("b", "k", uid, 3, body(b"abc"), size=3,
                                    expected_md5=hashlib.md5(b"abd").digest())
        with pytest.raises(oe.UploadNotFound):
            await layer.upload_part("b", "other-key", uid, 1, body(b"x"), size=1)
        await layer.abort_multipart_upload("b", "k", uid)
        with pytest.raises(oe.UploadNotFound):
            await layer.upload_part("b", "k", uid, 1, body(b"x"), size=1)
        with pytest.raises(oe.ObjectNotFound):
            await layer.open_object("b", "k")
    run(go())


def test_buckets():
    async def go():
        layer, nodes, _ = memory_layer()
        await layer.make_bucket("b1")
        await layer.make_bucket("b2")
        with pytest.raises(oe.BucketAlreadyExists):
            await layer.make_bucket("b1")
        assert [b.name for b in await layer.list_buckets()] == ["b1", "b2"]
        assert (await layer.head_bucket("b1")).name == "b1"
        with pytest.raises(oe.BucketNotFound):
            await layer.head_bucket("nope")
        await layer.put_bucket_config("b1", "encryption", b"<xml/>")
        assert await layer.get_bucket_config("b1", "encryption") == b"<xml/>"
        await layer.put_bucket_config("b1", "encryption", None)
        assert await layer.get_bucket_config("b1", "encryption") is None
        await layer.put_object("b1", "k", body(b"x"), size=1, metadata=META)
        with pytest.raises(oe.BucketNotEmpty):
            await layer.delete_bucket("b1")
        await layer.delete_object("b1", "k")
        await layer.delete_bucket("b1")
        with pytest.raises(oe.BucketNotFound):
            await layer.delete_bucket("b1")
        for n in ("node-1", "node-2", "node-3"):
            nodes[n].fail_next["MakeBucket"] = NodeCallError(n, grpc.StatusCode.UNAVAILABLE)
        nodes["node-4"].down = True
        with pytest.raises(oe.InsufficientWriteQuorum):
            await layer.make_bucket("b3")
        nodes["node-4"].down = False
        assert "b3" not in [b.name for b in await layer.list_buckets()]
        assert all("b3" not in n.buckets for n in nodes.values())
    run(go())


def test_upload_listing_pages_merge_sets_with_quorum():
    async def go():
        layer, nodes, _ = memory_layer(nodes=12, set_size=6)
        await layer.make_bucket("b")
        made = [await layer.create_multipart_upload("b", f"k{i % 20:02d}", metadata=META)
                for i in range(45)]
        want = sorted((u.key, u.upload_id) for u in made)
        # an upload left on one node only (its abort reached the others): never listed, even
        # where it sorts past the last upload of that node's page
        stray = next(n for n in nodes.values() if n.uploads)
        ghost = next(iter(stray.uploads.values())).info
        stray.uploads["ghost"] = type(next(iter(stray.uploads.values())))(pb.UploadInfo(
            bucket="b", key="k05", upload_id="ffffffff-ffff-7fff-bfff-ffffffffffff",
            initiated_ns=ghost.initiated_ns, meta=ghost.meta))
        limits: list[int] = []
        for node in nodes.values():
            def list_uploads(request, serve=node._ListUploads):
                limits.append(request.limit)
                return serve(request)
            node._ListUploads = list_uploads
        found, marker = [], ("", "")
        while True:
            page, more = await layer.list_multipart_uploads(
                "b", key_marker=marker[0], upload_id_marker=marker[1], limit=4)
            assert len(page) <= 4
            found += [(u.key, u.upload_id) for u in page]
            if not more:
                break
            marker = found[-1]
        assert found == want
        assert set(limits) == {5}  # each node is asked for a page, never for everything
        page, more = await layer.list_multipart_uploads("b", prefix="k07", limit=100)
        assert [(u.key, u.upload_id) for u in page] == [u for u in want if u[0] == "k07"]
        assert not more
    run(go())
