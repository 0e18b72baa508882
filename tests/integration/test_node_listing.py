"""ListObjects on a real node over 10,000 keys: byte order, pagination, prefixes, markers."""

from __future__ import annotations

import random
from collections.abc import Iterator

import pytest

from proto import storage_pb2 as pb
from tests.nodeclient import GEOMETRY, NodeClient, one_node, uuid7

KEYS = 10_000
IN_FLIGHT = 64


def _keys() -> list[str]:
    rng = random.Random(7)
    alphabet = ["a", "b", "z", "A", "0", "/", "-", "é", "ü", "中", "😀", "~"]
    keys: set[str] = set()
    while len(keys) < KEYS - 3:
        top = rng.choice(["photos/", "photos/2024/", "docs/", "a", "ab", "é/", "z"])
        keys.add(top + "".join(rng.choice(alphabet) for _ in range(rng.randrange(1, 9))))
    keys |= {"photos", "photos/", "photos0"}  # neighbours of a prefix
    return sorted(keys, key=str.encode)


@pytest.fixture(scope="module")
def listing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NodeClient, list[str]]]:
    with one_node(tmp_path_factory.mktemp("node"), bucket="list") as (_, client):
        keys = _keys()
        _commit_all(client, keys)
        yield client, keys


def _commit_all(client: NodeClient, keys: list[str]) -> None:
    """Inline commits, IN_FLIGHT at a time (the node group-commits them)."""
    pending = []
    for key in random.Random(1).sample(keys, len(keys)):
        request = pb.CommitObjectRequest(bucket="list", key=key, version_id=uuid7(),
                                         geometry=GEOMETRY, inline_shard=key.encode(),
                                         meta=key.encode())
        pending.append(client.stub.CommitObject.future(request, timeout=60))
        if len(pending) >= IN_FLIGHT:
            assert pending.pop(0).result().is_latest
    for future in pending:
        assert future.result().is_latest


def test_full_listing_in_byte_order(listing: tuple[NodeClient, list[str]]) -> None:
    client, keys = listing
    stream = client.stub.ListObjects(pb.ListObjectsRequest(bucket="list"), timeout=60)
    got = [(v.key, v.meta, v.is_inline) for v in stream]
    assert [k for k, _, _ in got] == keys
    assert all(meta == k.encode() and inline for k, meta, inline in got)


def test_pagination_with_start_after(listing: tuple[NodeClient, list[str]]) -> None:
    client, keys = listing
    pages, after = [], ""
    while True:
        page = client.list_objects("list", start_after=after, limit=1000)
        if not page:
            break
        assert len(page) <= 1000
        pages.append(page)
        after = page[-1]
    assert [k for page in pages for k in page] == keys
    assert len(pages) == 10
    middle = keys[4321]
    assert client.list_objects("list", start_after=middle, limit=3) == keys[4322:4325]
    assert client.list_objects("list", start_after="not-a-key-zz", limit=2) == [
        k for k in keys if k.encode() > b"not-a-key-zz"][:2]


@pytest.mark.parametrize("prefix", ["photos/", "photos/2024/", "é/", "ab", "nothing/"])
def test_prefix(listing: tuple[NodeClient, list[str]], prefix: str) -> None:
    client, keys = listing
    want = [k for k in keys if k.startswith(prefix)]
    assert client.list_objects("list", prefix=prefix) == want
    if len(want) > 10:
        assert client.list_objects("list", prefix=prefix, start_after=want[4], limit=5) == \
            want[5:10]
    # a start_after before the prefix starts at the prefix
    assert client.list_objects("list", prefix=prefix, start_after="0", limit=3) == want[:3]


def test_delete_markers_hidden_unless_asked(listing: tuple[NodeClient, list[str]]) -> None:
    client, keys = listing
    hidden = keys[100:110]
    for key in hidden:
        client.delete_marker("list", key)
    visible = client.list_objects("list", start_after=keys[95], limit=10)
    assert visible == keys[96:100] + keys[110:116]
    with_markers = client.list_objects("list", start_after=keys[95], limit=10,
                                       include_delete_markers=True)
    assert with_markers == keys[96:106]
    assert client.stat().objects == KEYS - len(hidden)
