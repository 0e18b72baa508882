"""Multipart staging on a real node: parts, re-uploads, listing, completion, abort."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster.launcher import Cluster
from proto import storage_pb2 as pb
from tests.nodeclient import GEOMETRY, TIMEOUT, NodeClient, blocks_of, one_node, reason, uuid7


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, NodeClient]]:
    with one_node(tmp_path_factory.mktemp("node"), bucket="multi") as node:
        yield node


def _shard_files(cluster: Cluster) -> set[str]:
    root = Path(cluster.record("node-1").data_dir) / "shards"
    return {p.name for p in root.rglob("*") if p.is_file()}


def _put_part(client: NodeClient, upload_id: str, key: str, number: int,
              data: bytes) -> str:
    data_id = str(uuid.uuid4())
    client.write_shard("multi", key, data_id, blocks_of(data), part_number=number,
                       upload_id=upload_id)
    client.stub.PutPart(pb.PutPartRequest(
        upload_id=upload_id, part_number=number, data_id=data_id, shard_index=0,
        geometry=GEOMETRY, meta=f"etag-{number}".encode(), shard_size=len(data)),
        timeout=TIMEOUT)
    return data_id


def test_upload_reupload_complete(node: tuple[Cluster, NodeClient]) -> None:
    cluster, client = node
    stub = client.stub
    before = _shard_files(cluster)
    upload_id = str(uuid.uuid4())
    stub.CreateUpload(pb.CreateUploadRequest(bucket="multi", key="big", upload_id=upload_id,
                                             meta=b"content-type"), timeout=TIMEOUT)
    info = stub.GetUpload(pb.GetUploadRequest(upload_id=upload_id), timeout=TIMEOUT)
    assert (info.bucket, info.key, info.meta) == ("multi", "big", b"content-type")

    parts = {n: os.urandom(40_000 + n) for n in (1, 2, 3)}
    ids = {n: _put_part(client, upload_id, "big", n, parts[n]) for n in parts}
    first_attempt_files = _shard_files(cluster) - before
    assert len(first_attempt_files) == 3
    parts[2] = os.urandom(12_345)  # part 2 uploaded again: replaces the first attempt
    ids[2] = _put_part(client, upload_id, "big", 2, parts[2])
    assert len(_shard_files(cluster) - before) == 3  # the replaced attempt's file is gone

    listed = stub.ListParts(pb.ListPartsRequest(upload_id=upload_id), timeout=TIMEOUT).parts
    assert [(p.part_number, p.data_id, p.shard_size, p.meta) for p in listed] == [
        (n, ids[n], len(parts[n]), f"etag-{n}".encode()) for n in (1, 2, 3)]
    page = stub.ListParts(pb.ListPartsRequest(upload_id=upload_id, part_number_marker=1,
                                              limit=1), timeout=TIMEOUT).parts
    assert [p.part_number for p in page] == [2]
    uploads = stub.ListUploads(pb.ListUploadsRequest(bucket="multi"), timeout=TIMEOUT).uploads
    assert [u.upload_id for u in uploads] == [upload_id]

    # complete with parts 1 and 3 only: part 2's attempt is dropped with the upload
    version_id = uuid7()
    request = pb.CommitObjectRequest(bucket="multi", key="big", version_id=version_id,
                                     geometry=GEOMETRY, upload_id=upload_id, meta=b"final")
    for n in (1, 3):
        request.parts.add(part_number=n, data_id=ids[n], shard_size=len(parts[n]))
    assert stub.CommitObject(request, timeout=TIMEOUT).is_latest
    assert stub.CommitObject(request, timeout=TIMEOUT).is_latest  # a retry is harmless
    assert client.read("multi", "big", part_number=1) == parts[1]
    assert client.read("multi", "big", part_number=3) == parts[3]
    with pytest.raises(grpc.RpcError) as err:
        client.read("multi", "big", part_number=2)
    assert reason(err.value) == "NoSuchPart"
    assert len(_shard_files(cluster) - before) == 2
    with pytest.raises(grpc.RpcError) as err:
        stub.GetUpload(pb.GetUploadRequest(upload_id=upload_id), timeout=TIMEOUT)
    assert reason(err.value) == "NoSuchUpload"
    assert stub.ListUploads(pb.ListUploadsRequest(bucket="multi"), timeout=TIMEOUT).uploads == []


def test_completion_naming_a_replaced_attempt_fails(node: tuple[Cluster, NodeClient]) -> None:
    _, client = node
    upload_id = str(uuid.uuid4())
    client.stub.CreateUpload(pb.CreateUploadRequest(bucket="multi", key="stale",
                                                    upload_id=upload_id), timeout=TIMEOUT)
    old = _put_part(client, upload_id, "stale", 1, b"a" * 1000)
    _put_part(client, upload_id, "stale", 1, b"b" * 1000)
    request = pb.CommitObjectRequest(bucket="multi", key="stale", version_id=uuid7(),
                                     geometry=GEOMETRY, upload_id=upload_id)
    request.parts.add(part_number=1, data_id=old, shard_size=1000)
    with pytest.raises(grpc.RpcError) as err:
        client.stub.CommitObject(request, timeout=TIMEOUT)
    assert (err.value.code(), reason(err.value)) == (grpc.StatusCode.NOT_FOUND, "NoSuchPart")
    # the upload is untouched and can still be completed or aborted
    assert len(client.stub.ListParts(pb.ListPartsRequest(upload_id=upload_id),
                                     timeout=TIMEOUT).parts) == 1


def test_abort_drops_everything(node: tuple[Cluster, NodeClient]) -> None:
    cluster, client = node
    before = _shard_files(cluster)
    upload_id = str(uuid.uuid4())
    client.stub.CreateUpload(pb.CreateUploadRequest(bucket="multi", key="aborted",
                                                    upload_id=upload_id), timeout=TIMEOUT)
    for n in (1, 2):
        _put_part(client, upload_id, "aborted", n, os.urandom(30_000))
    assert len(_shard_files(cluster) - before) == 2
    client.stub.AbortUpload(pb.AbortUploadRequest(upload_id=upload_id), timeout=TIMEOUT)
    assert _shard_files(cluster) == before
    with pytest.raises(grpc.RpcError) as err:
        client.stub.AbortUpload(pb.AbortUploadRequest(upload_id=upload_id), timeout=TIMEOUT)
    assert reason(err.value) == "NoSuchUpload"


def test_abort_write_drops_staged_data(node: tuple[Cluster, NodeClient]) -> None:
    cluster, client = node
    data_id = str(uuid.uuid4())
    client.write_shard("multi", "w", data_id, blocks_of(os.urandom(50_000)))
    assert client.stat().pending_writes == 1
    assert len(os.listdir(Path(cluster.record("node-1").data_dir) / "tmp")) == 1
    client.stub.AbortWrite(pb.AbortWriteRequest(data_id=data_id), timeout=TIMEOUT)
    assert client.stat().pending_writes == 0
    assert os.listdir(Path(cluster.record("node-1").data_dir) / "tmp") == []
