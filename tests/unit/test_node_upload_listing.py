"""The node's ListUploads: S3's marker rule, prefixes, and pages that cost O(page) however many
uploads sort before them (no processes, no gRPC)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from node import uploads
from node.config import parse_args
from node.metastore import MetaStore
from node.service import StorageService
from node.shardstore import ShardStore
from node.writes import PendingWrites
from proto import storage_pb2 as pb
from tests.nodeclient import uuid7

KEYS = [f"dir{d}/k{i:03d}" for d in range(3) for i in range(90)] + ["same"] * 30  # 300


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StorageService]:
    root = tmp_path_factory.mktemp("node")
    config = parse_args(["--data", str(root), "--listen", "127.0.0.1:1", "--node-id", "u",
                         "--insecure"])
    shards, meta = ShardStore(root), MetaStore(root / "meta.db")
    shards.prepare()
    meta.open()
    svc = StorageService(config, meta, shards, PendingWrites())
    svc.MakeBucket(pb.MakeBucketRequest(bucket="unit"))
    for key in KEYS:
        svc.CreateUpload(pb.CreateUploadRequest(bucket="unit", key=key, upload_id=uuid7(),
                                                meta=b"{}"))
    yield svc
    meta.close()


def _page(svc: StorageService, limit: int, prefix: str = "", key_marker: str = "",
          upload_id_marker: str = "") -> list[tuple[str, str]]:
    reply = svc.ListUploads(pb.ListUploadsRequest(
        bucket="unit", prefix=prefix, key_marker=key_marker,
        upload_id_marker=upload_id_marker, limit=limit))
    return [(u.key, u.upload_id) for u in reply.uploads]


def _walk(svc: StorageService, limit: int, prefix: str = "") -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    while True:
        marker = found[-1] if found else ("", "")
        page = _page(svc, limit, prefix, *marker)
        assert len(page) <= limit
        found += page
        if len(page) < limit:
            return found


def test_pages_walk_every_upload_once_in_order(service):
    everything = _page(service, 0)
    assert len(everything) == 300
    assert everything == sorted(everything)
    assert _walk(service, 7) == everything
    assert _walk(service, 7, prefix="dir1/") == [u for u in everything
                                                 if u[0].startswith("dir1/")]
    assert _walk(service, 4, prefix="same") == everything[-30:]


def test_s3_marker_rule(service):
    everything = _page(service, 0)
    same = everything[-30:]
    # a key marker alone: past every upload of that key
    assert _page(service, 0, key_marker="dir2/k089") == same
    assert _page(service, 0, key_marker="same") == []
    # with an upload id marker: that key's later uploads, then later keys
    assert _page(service, 5, key_marker="same", upload_id_marker=same[9][1]) == same[10:15]
    assert _page(service, 3, key_marker="dir0/k005", upload_id_marker=everything[5][1]) == \
        everything[6:9]
    # a key marker before the prefix does not matter; one past it ends the listing
    assert _page(service, 2, prefix="dir1/", key_marker="dir0/zzz") == everything[90:92]
    assert _page(service, 2, prefix="dir1/", key_marker="dir2/") == []


def test_a_late_page_costs_what_an_early_one_does(service):
    everything = _page(service, 0)

    def steps(key_marker: str, upload_id_marker: str) -> int:
        count = 0

        def tick() -> int:
            nonlocal count
            count += 1
            return 0

        def query(conn):
            conn.set_progress_handler(tick, 1)
            try:
                return uploads.list_uploads(conn, "unit", "", key_marker, upload_id_marker, 7)
            finally:
                conn.set_progress_handler(None, 1)

        assert len(service.meta.read(query)) == 7
        return count

    early, late = steps(*everything[3]), steps(*everything[280])
    assert late < early * 1.5, (early, late)
