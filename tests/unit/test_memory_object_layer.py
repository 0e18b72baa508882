"""MemoryObjectLayer honours the object-layer contract: streaming bodies, nothing visible when
a body fails, every error of the contract, multipart rules and listing order."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from gateway.objects import errors as oe
from gateway.objects.api import MIN_PART_SIZE, CompletedPart, PutMetadata, SSEParams
from gateway.objects.memory import MemoryObjectLayer


async def _body(*chunks: bytes, fail: Exception | None = None):
    for chunk in chunks:
        yield chunk
    if fail is not None:
        raise fail


async def _read(layer, bucket, key, start=0, length=None) -> bytes:
    reader = await layer.open_object(bucket, key)
    try:
        return b"".join([c async for c in reader.stream(start, length)])
    finally:
        await reader.close()


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def layer() -> MemoryObjectLayer:
    layer = MemoryObjectLayer()
    run(layer.make_bucket("bkt"))
    return layer


def test_put_get_and_ranges(layer):
    async def scenario():
        info = await layer.put_object("bkt", "k", _body(b"hello ", b"world"), size=11,
                                      metadata=PutMetadata(user_metadata={"a": "1"}))
        assert info.etag == hashlib.md5(b"hello world").hexdigest()
        assert await _read(layer, "bkt", "k") == b"hello world"
        assert await _read(layer, "bkt", "k", 3, 5) == b"lo wo"
        assert await _read(layer, "bkt", "k", 6) == b"world"
        reader = await layer.open_object("bkt", "k")
        assert reader.info.metadata.user_metadata == {"a": "1"}
    run(scenario())


def test_failing_body_leaves_old_version(layer):
    async def scenario():
        await layer.put_object("bkt", "k", _body(b"old"), size=3, metadata=PutMetadata())
        with pytest.raises(oe.BadDigest):
            await layer.put_object("bkt", "k", _body(b"new", fail=oe.BadDigest()), size=3,
                                   metadata=PutMetadata())
        with pytest.raises(oe.IncompleteBody):
            await layer.put_object("bkt", "k", _body(b"ne"), size=3, metadata=PutMetadata())
        with pytest.raises(oe.BadDigest):
            await layer.put_object("bkt", "k", _body(b"new"), size=3, metadata=PutMetadata(),
                                   expected_md5=hashlib.md5(b"other").digest())
        with pytest.raises(oe.BadDigest):
            await layer.put_object("bkt", "fresh", _body(b"x", fail=oe.BadDigest()), size=1,
                                   metadata=PutMetadata())
        assert await _read(layer, "bkt", "k") == b"old"
        assert [o.key for o in (await layer.list_objects("bkt")).objects] == ["k"]
    run(scenario())


def test_trailer_checksums_read_after_the_body(layer):
    async def scenario():
        checksums: dict[str, str] = {}

        async def body():
            yield b"data"
            checksums["CRC32"] = "filled-at-the-end"

        info = await layer.put_object("bkt", "k", body(), size=4,
                                      metadata=PutMetadata(checksums=checksums))
        assert info.metadata.checksums == {"CRC32": "filled-at-the-end"}
    run(scenario())


def test_contract_errors(layer):
    async def scenario():
        with pytest.raises(oe.BucketNotFound):
            await layer.put_object("nope", "k", _body(b"x"), size=1, metadata=PutMetadata())
        with pytest.raises(oe.ObjectNotFound):
            await layer.open_object("bkt", "missing")
        with pytest.raises(oe.BucketAlreadyExists):
            await layer.make_bucket("bkt")
        await layer.put_object("bkt", "k", _body(b"x"), size=1, metadata=PutMetadata())
        with pytest.raises(oe.VersionNotFound):
            await layer.open_object("bkt", "k", version_id="other")
        with pytest.raises(oe.BucketNotEmpty):
            await layer.delete_bucket("bkt")
        with pytest.raises(oe.KMSNotConfigured):
            await layer.put_object("bkt", "k2", _body(b"x"), size=1, metadata=PutMetadata(),
                                   sse=SSEParams("SSE-S3"))
        await layer.delete_object("bkt", "k")
        await layer.delete_object("bkt", "k")  # deleting a missing key succeeds
        await layer.delete_bucket("bkt")
        with pytest.raises(oe.BucketNotFound):
            await layer.head_bucket("bkt")
    run(scenario())


def test_listing_order_prefix_and_truncation(layer):
    async def scenario():
        for key in ["b", "a/2", "a/1", "c", "a/10"]:
            await layer.put_object("bkt", key, _body(b"x"), size=1, metadata=PutMetadata())
        page = await layer.list_objects("bkt", limit=2)
        assert [o.key for o in page.objects] == ["a/1", "a/10"]
        assert page.truncated
        page = await layer.list_objects("bkt", start_after="a/10", limit=10)
        assert [o.key for o in page.objects] == ["a/2", "b", "c"]
        assert not page.truncated
        page = await layer.list_objects("bkt", prefix="a/", limit=3)
        assert [o.key for o in page.objects] == ["a/1", "a/10", "a/2"]
        assert not page.truncated
    run(scenario())


def test_multipart_rules(layer):
    async def scenario():
        upload = await layer.create_multipart_upload("bkt", "mp", metadata=PutMetadata())
        big, small = b"a" * MIN_PART_SIZE, b"b" * 10
        p1 = await layer.upload_part("bkt", "mp", upload.upload_id, 1, _body(big),
                                     size=len(big))
        p2 = await layer.upload_part("bkt", "mp", upload.upload_id, 2, _body(small),
                                     size=len(small))
        p3 = await layer.upload_part("bkt", "mp", upload.upload_id, 3, _body(small),
                                     size=len(small))
        with pytest.raises(oe.InvalidPartOrder):
            await layer.complete_multipart_upload("bkt", "mp", upload.upload_id, [
                CompletedPart(2, p2.etag), CompletedPart(1, p1.etag)])
        with pytest.raises(oe.InvalidPart):
            await layer.complete_multipart_upload("bkt", "mp", upload.upload_id, [
                CompletedPart(1, "0" * 32)])
        with pytest.raises(oe.EntityTooSmall):
            await layer.complete_multipart_upload("bkt", "mp", upload.upload_id, [
                CompletedPart(1, p1.etag), CompletedPart(2, p2.etag), CompletedPart(3, p3.etag)])
        info = await layer.complete_multipart_upload("bkt", "mp", upload.upload_id, [
            CompletedPart(1, p1.etag), CompletedPart(3, p3.etag)])
        expected = hashlib.md5(hashlib.md5(big).digest() + hashlib.md5(small).digest())
        assert info.etag == f"{expected.hexdigest()}-2"
        assert info.parts == (len(big), len(small))
        assert await _read(layer, "bkt", "mp") == big + small
        with pytest.raises(oe.UploadNotFound):
            await layer.get_upload("bkt", "mp", upload.upload_id)
    run(scenario())


def test_abort_and_unknown_upload(layer):
    async def scenario():
        upload = await layer.create_multipart_upload("bkt", "mp", metadata=PutMetadata())
        await layer.abort_multipart_upload("bkt", "mp", upload.upload_id)
        with pytest.raises(oe.UploadNotFound):
            await layer.upload_part("bkt", "mp", upload.upload_id, 1, _body(b"x"), size=1)
        with pytest.raises(oe.UploadNotFound):
            await layer.abort_multipart_upload("bkt", "mp", upload.upload_id)
        other = await layer.create_multipart_upload("bkt", "mp", metadata=PutMetadata())
        with pytest.raises(oe.UploadNotFound):
            await layer.get_upload("bkt", "another-key", other.upload_id)
    run(scenario())
