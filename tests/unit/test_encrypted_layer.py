"""The erasure-coded object layer with encryption, over in-process nodes and an in-memory KMS:
every mode round trips (single part, multipart, ranges at every package and block boundary),
what is stored is sealed, ETags are what S3 clients expect, forged shards are repaired, keys
rotate without touching data."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

import pytest

from common.bitrot import XXH3_128, block_hash
from gateway.crypto.cache import CachingKMS
from gateway.crypto.envelope import ObjectEncryption
from gateway.crypto.kms import MemoryKMS
from gateway.crypto.packages import ENCRYPTED_PACKAGE_SIZE, PACKAGE_SIZE
from gateway.objects import errors as oe
from gateway.objects.api import CompletedPart, PutMetadata, SSECustomerKey, SSEParams

from .memory_cluster import body, memory_layer

PACKAGES_PER_BLOCK = 3  # small erasure blocks: a few hundred KiB cross many of them
BLOCK = PACKAGES_PER_BLOCK * ENCRYPTED_PACKAGE_SIZE
PLAIN_BLOCK = PACKAGES_PER_BLOCK * PACKAGE_SIZE
META = PutMetadata()
KEY_C = os.urandom(32)
CUSTOMER = SSECustomerKey(KEY_C, "md5-not-checked-here")
MODES = {
    "SSE-S3": SSEParams("SSE-S3"),
    "SSE-KMS": SSEParams("SSE-KMS", kms_key_id="tenant-key", kms_context={"team": "a"}),
    "SSE-C": SSEParams("SSE-C", customer_key=CUSTOMER),
}


def run(coro):
    return asyncio.run(coro)


def layer_with_kms(**ctx):
    kms = MemoryKMS("tessera-default", keys=["tenant-key", "other-key"])
    layer, nodes, heal = memory_layer(block_size=BLOCK, **ctx)
    layer.encryption = ObjectEncryption(CachingKMS(kms))
    return layer, nodes, heal, kms


def customer_for(mode: str) -> SSECustomerKey | None:
    return CUSTOMER if mode == "SSE-C" else None


async def read(layer, key, mode, start=0, length=None, bucket="b"):
    reader = await layer.open_object(bucket, key, sse_c=customer_for(mode))
    try:
        return b"".join([c async for c in reader.stream(start, length)]), reader.info
    finally:
        await reader.close()


def boundaries(size: int) -> list[int]:
    """Offsets around every package and erasure-block boundary of a stream of `size`."""
    points = {0, size - 1}
    for edge in range(PACKAGE_SIZE, size, PACKAGE_SIZE):
        points.update({edge - 1, edge, edge + 1})
    return sorted(p for p in points if 0 <= p < size)


@pytest.mark.parametrize("mode", list(MODES))
@pytest.mark.parametrize("size", [0, 1, PACKAGE_SIZE, 2 * PLAIN_BLOCK + 12_345])
def test_single_part_round_trip_and_ranges(mode, size):
    async def go():
        layer, _, _, _ = layer_with_kms()
        await layer.make_bucket("b")
        data = os.urandom(size)
        info = await layer.put_object("b", "k", body(data, 70_001), size=size, metadata=META,
                                      sse=MODES[mode])
        assert info.size == size and info.encryption.mode == mode
        got, read_info = await read(layer, "k", mode)
        assert got == data and read_info.etag == info.etag and read_info.size == size
        if mode == "SSE-S3":
            assert info.etag == hashlib.md5(data).hexdigest()
        else:
            assert len(info.etag) == 32 and info.etag != hashlib.md5(data).hexdigest()
        for start in boundaries(size):
            for length in (1, 2, PACKAGE_SIZE + 1):
                part, _ = await read(layer, "k", mode, start, length)
                assert part == data[start:start + length], (start, length)
    run(go())


def test_a_range_fetches_only_the_blocks_it_touches():
    async def go():
        layer, _, _, _ = layer_with_kms()
        await layer.make_bucket("b")
        data = os.urandom(6 * PLAIN_BLOCK)
        await layer.put_object("b", "k", body(data), size=len(data), metadata=META,
                               sse=MODES["SSE-S3"])
        reader = await layer.open_object("b", "k")
        seen = []
        original = reader.inner.stored_part_blocks

        async def spy(part_index, lo, hi):
            async for index, chunk in original(part_index, lo, hi):
                seen.append(index)
                yield index, chunk

        reader.inner.stored_part_blocks = spy
        start = 3 * PLAIN_BLOCK + PACKAGE_SIZE + 5  # inside block 3, second package
        got = b"".join([c async for c in reader.stream(start, 10)])
        assert got == data[start:start + 10] and seen == [3]
    run(go())


@pytest.mark.parametrize("mode", list(MODES))
def test_multipart_round_trip_with_ranges_across_parts(mode):
    async def go():
        layer, _, _, _ = layer_with_kms()
        await layer.make_bucket("b")
        upload = await layer.create_multipart_upload("b", "mp", metadata=META, sse=MODES[mode])
        assert upload.encryption.mode == mode
        sizes = [5 * 1024 * 1024, 5 * 1024 * 1024 + 7, 100_000]
        parts = [os.urandom(s) for s in sizes]
        # part 2 is uploaded twice: the second attempt gets its own nonce and wins
        stale = await layer.upload_part("b", "mp", upload.upload_id, 2, body(os.urandom(sizes[1])),
                                        size=sizes[1], sse_c=customer_for(mode))
        etags = []
        for number, data in enumerate(parts, 1):
            part = await layer.upload_part("b", "mp", upload.upload_id, number, body(data),
                                           size=len(data), sse_c=customer_for(mode))
            etags.append(part.etag)
        if mode == "SSE-S3":
            assert etags == [hashlib.md5(p).hexdigest() for p in parts]
        assert stale.etag != etags[1]
        listed, _ = await layer.list_parts("b", "mp", upload.upload_id)
        assert [p.etag for p in listed] == etags
        info = await layer.complete_multipart_upload(
            "b", "mp", upload.upload_id,
            [CompletedPart(n, e) for n, e in enumerate(etags, 1)])
        md5s = b"".join(bytes.fromhex(e) for e in etags)
        assert info.etag == f"{hashlib.md5(md5s).hexdigest()}-3"
        data = b"".join(parts)
        got, read_info = await read(layer, "mp", mode)
        assert got == data and read_info.etag == info.etag and read_info.parts == tuple(sizes)
        edge = sizes[0]
        for start, length in ((edge - 3, 10), (edge - PACKAGE_SIZE, 2 * PACKAGE_SIZE),
                              (0, edge + sizes[1] + 1), (edge + sizes[1] - 1, 2),
                              (len(data) - 1, 1)):
            got, _ = await read(layer, "mp", mode, start, length)
            assert got == data[start:start + length]
        page = await layer.list_objects("b")
        assert [(o.key, o.etag, o.size) for o in page.objects] == [("mp", info.etag, len(data))]
    run(go())


def stored_blobs(nodes) -> bytes:
    """Every metadata blob on every node (objects, uploads, parts), concatenated."""
    out = []
    for node in nodes.values():
        for versions in node.keys.values():
            out += [v.record.meta for v in versions.values()]
        for upload in node.uploads.values():
            out.append(upload.info.meta)
            out += [p.info.meta for p in upload.parts.values()]
    return b"\n".join(out)


def test_stored_metadata_holds_only_sealed_material():
    async def go():
        layer, nodes, _, _ = layer_with_kms()
        await layer.make_bucket("b")
        data = os.urandom(100_000)
        md5 = hashlib.md5(data).hexdigest()
        for mode, sse in MODES.items():
            await layer.put_object("b", mode, body(data), size=len(data), metadata=META,
                                   sse=sse)
        blobs = stored_blobs(nodes)
        assert md5.encode() not in blobs and KEY_C not in blobs
        for versions in next(iter(nodes.values())).keys.values():
            for v in versions.values():
                doc = json.loads(v.record.meta)
                assert doc["enc"]["sse-mode"] in MODES
                assert "sse-sealed-key" in doc["enc"]
        page = await layer.list_objects("b")  # the SSE-S3 ETag is unsealed for listings
        assert {o.key: o.etag for o in page.objects}["SSE-S3"] == md5
    run(go())


def test_customer_key_errors_and_plain_objects():
    async def go():
        layer, _, _, _ = layer_with_kms()
        await layer.make_bucket("b")
        await layer.put_object("b", "c", body(b"secret"), size=6, metadata=META,
                               sse=MODES["SSE-C"])
        await layer.put_object("b", "s3", body(b"x"), size=1, metadata=META,
                               sse=MODES["SSE-S3"])
        await layer.put_object("b", "plain", body(b"x"), size=1, metadata=META)
        with pytest.raises(oe.SSECKeyRequired):
            await layer.open_object("b", "c")
        with pytest.raises(oe.SSECKeyMismatch):
            await layer.open_object("b", "c", sse_c=SSECustomerKey(os.urandom(32), "x"))
        for key in ("s3", "plain"):
            with pytest.raises(oe.SSENotApplicable):
                await layer.open_object("b", key, sse_c=CUSTOMER)
    run(go())


def test_kms_errors_come_before_the_body_and_store_nothing():
    async def go():
        layer, nodes, _, kms = layer_with_kms()
        await layer.make_bucket("b")

        async def never():
            raise AssertionError("the body must not be read")
            yield b""

        with pytest.raises(oe.KMSKeyNotFound):
            await layer.put_object("b", "k", never(), size=1, metadata=META,
                                   sse=SSEParams("SSE-KMS", kms_key_id="no-such-key"))
        kms.available = False
        with pytest.raises(oe.KMSUnavailable):
            await layer.put_object("b", "k", never(), size=1, metadata=META,
                                   sse=SSEParams("SSE-S3"))
        assert not any(n.keys or n.pending for n in nodes.values())
        no_kms, _, _ = memory_layer(block_size=BLOCK)
        await no_kms.make_bucket("b")
        with pytest.raises(oe.KMSNotConfigured):
            await no_kms.put_object("b", "k", never(), size=1, metadata=META,
                                    sse=SSEParams("SSE-S3"))
        info = await no_kms.put_object("b", "c", body(b"abc"), size=3, metadata=META,
                                       sse=MODES["SSE-C"])  # SSE-C needs no KMS
        assert (await read(no_kms, "c", "SSE-C"))[0] == b"abc" and info.size == 3
    run(go())


def forge(node, bucket: str, key: str, part: int, block: int) -> None:
    """What a malicious node does: alter a stored block and fix its hash up."""
    for version in node.keys[(bucket, key)].values():
        blocks = version.shards[part]
        data, _ = blocks[block]
        forged = data[:100] + bytes([data[100] ^ 0x01]) + data[101:]
        blocks[block] = (forged, block_hash(XXH3_128, forged))


@pytest.mark.parametrize("mode", ["SSE-S3", "SSE-C"])
def test_a_forged_shard_is_outvoted_by_authentication(mode):
    async def go():
        layer, nodes, heal, _ = layer_with_kms()
        await layer.make_bucket("b")
        data = os.urandom(4 * PLAIN_BLOCK + 999)
        await layer.put_object("b", "k", body(data), size=len(data), metadata=META,
                               sse=MODES[mode])
        reader = await layer.open_object("b", "k", sse_c=customer_for(mode))
        first_data_node = reader.inner.chosen.meta.erasure.distribution[0]
        await reader.close()
        forge(nodes[first_data_node], "b", "k", 1, 2)
        got, _ = await read(layer, "k", mode)
        assert got == data
        start = 2 * PLAIN_BLOCK + 7
        assert (await read(layer, "k", mode, start, 5))[0] == data[start:start + 5]
        assert first_data_node in {n for item in heal.items() for n in item.nodes}
    run(go())


def test_forgery_on_too_many_shards_fails_authentication_never_serves_altered_bytes():
    async def go():
        layer, nodes, _, _ = layer_with_kms()
        await layer.make_bucket("b")
        data = os.urandom(2 * PLAIN_BLOCK)
        await layer.put_object("b", "k", body(data), size=len(data), metadata=META,
                               sse=MODES["SSE-S3"])
        for node in nodes.values():  # every holder: no k shards agree with the tags
            if ("b", "k") in node.keys:
                forge(node, "b", "k", 1, 1)
        reader = await layer.open_object("b", "k")
        served = b""
        with pytest.raises(oe.ObjectTampered):
            async for chunk in reader.stream():
                served += chunk
        assert served == data[:len(served)] and len(served) <= PLAIN_BLOCK
    run(go())


def test_rotation_rewraps_without_touching_data():
    async def go():
        layer, nodes, _, kms = layer_with_kms()
        await layer.make_bucket("b")
        data = os.urandom(PLAIN_BLOCK + 5)
        infos = {}
        for mode in ("SSE-S3", "SSE-KMS"):
            infos[mode] = await layer.put_object("b", mode, body(data), size=len(data),
                                                 metadata=META, sse=MODES[mode])
        shards_before = {n: {k: [dict(v.shards) for v in vs.values()]
                             for k, vs in node.keys.items()} for n, node in nodes.items()}
        for mode, info in infos.items():
            context = {"team": "a"} if mode == "SSE-KMS" else None
            rotated = await layer.update_metadata(
                "b", mode, info.version_id,
                rewrap=SSEParams(mode, kms_key_id="other-key", kms_context=context))
            assert rotated.etag == info.etag and rotated.encryption.mode == mode
        shards_after = {n: {k: [dict(v.shards) for v in vs.values()]
                            for k, vs in node.keys.items()} for n, node in nodes.items()}
        assert shards_after == shards_before
        del kms._keys["tenant-key"]  # the old key is gone: only the re-wrap can open
        del kms._keys["tessera-default"]
        fresh = ObjectEncryption(CachingKMS(kms))  # no cached data keys
        layer.encryption = fresh
        for mode, before in infos.items():
            got, info = await read(layer, mode, mode)
            assert got == data and info.etag == before.etag
            reader = await layer.open_object("b", mode)
            assert reader.meta.kms_key_id == "other-key"
            await reader.close()
    run(go())


def test_customer_key_rekey_in_place():
    async def go():
        layer, _, _, _ = layer_with_kms()
        await layer.make_bucket("b")
        info = await layer.put_object("b", "c", body(b"hello"), size=5, metadata=META,
                                      sse=MODES["SSE-C"])
        new = SSECustomerKey(os.urandom(32), "new")
        with pytest.raises(oe.SSECKeyMismatch):
            await layer.update_metadata("b", "c", info.version_id,
                                        rewrap=SSEParams("SSE-C", customer_key=new),
                                        sse_c=new)
        await layer.update_metadata("b", "c", info.version_id,
                                    rewrap=SSEParams("SSE-C", customer_key=new), sse_c=CUSTOMER,
                                    metadata=PutMetadata(user_metadata={"a": "b"}))
        with pytest.raises(oe.SSECKeyMismatch):
            await layer.open_object("b", "c", sse_c=CUSTOMER)
        reader = await layer.open_object("b", "c", sse_c=new)
        assert b"".join([c async for c in reader.stream()]) == b"hello"
        assert reader.info.metadata.user_metadata == {"a": "b"}
        await reader.close()
    run(go())


def test_ssec_upload_parts_need_the_same_key():
    async def go():
        layer, _, _, _ = layer_with_kms()
        await layer.make_bucket("b")
        upload = await layer.create_multipart_upload("b", "u", metadata=META,
                                                     sse=MODES["SSE-C"])
        with pytest.raises(oe.SSECKeyRequired):
            await layer.upload_part("b", "u", upload.upload_id, 1, body(b"x"), size=1)
        with pytest.raises(oe.SSECKeyMismatch):
            await layer.upload_part("b", "u", upload.upload_id, 1, body(b"x"), size=1,
                                    sse_c=SSECustomerKey(os.urandom(32), "x"))
        plain = await layer.create_multipart_upload("b", "p", metadata=META)
        with pytest.raises(oe.SSENotApplicable):
            await layer.upload_part("b", "p", plain.upload_id, 1, body(b"x"), size=1,
                                    sse_c=CUSTOMER)
    run(go())
