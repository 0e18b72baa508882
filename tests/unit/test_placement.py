"""Placement: stable, spread evenly, rotations cover every node, parity and quorums."""

from __future__ import annotations

from collections import Counter

import pytest

from common.topology import Topology
from gateway.placement import (
    Placement,
    PlacementError,
    default_parity,
    object_hash,
    parity_from_env,
    parse_storage_class,
    write_quorum,
)


def topology(nodes: int, set_size: int | None = None) -> Topology:
    return Topology.from_addresses([f"127.0.0.1:{9200 + i}" for i in range(nodes)], set_size)


def test_hash_is_stable_across_runs():
    # a fixed value: placement must never change between releases or processes
    assert object_hash("bucket", "key") == object_hash("bucket", "key")
    assert object_hash("bucket", "key") == 0x9B21C5123C747EA2EEC8F21A89D12B80


def test_locate_is_deterministic_and_a_rotation():
    p = Placement(topology(12, 6), parity=2)
    first = p.locate("photos", "2024/cat.jpg")
    assert first == p.locate("photos", "2024/cat.jpg")
    members = p.set_members(first.index)
    start = members.index(first.nodes[0])
    assert first.nodes == tuple(members[(start + i) % 6] for i in range(6))
    assert (first.data_shards, first.parity_shards) == (4, 2)


def test_spread_over_sets_and_start_positions():
    p = Placement(topology(12, 6), parity=2)
    sets: Counter[int] = Counter()
    starts: Counter[str] = Counter()
    for i in range(6000):
        e = p.locate("b", f"key-{i}")
        sets[e.index] += 1
        starts[e.nodes[0]] += 1
    assert set(sets) == {0, 1} and min(sets.values()) > 2700
    assert len(starts) == 12 and min(starts.values()) > 350


@pytest.mark.parametrize(("size", "parity"), [(2, 1), (4, 2), (5, 2), (6, 3), (7, 3), (8, 4),
                                              (16, 4)])
def test_default_parity_follows_minio(size, parity):
    assert default_parity(size) == parity


def test_storage_class_parsing():
    assert parse_storage_class("EC:2") == 2
    assert parse_storage_class(" ec:4 ") == 4
    assert parity_from_env({"MINIO_STORAGE_CLASS_STANDARD": "EC:3"}) == 3
    assert parity_from_env({}) is None
    with pytest.raises(PlacementError):
        parse_storage_class("RRS")


def test_parity_bounds_and_quorums():
    with pytest.raises(PlacementError):
        Placement(topology(6), parity=4)  # more than half the set
    assert Placement(topology(6)).parity_shards == 3
    assert write_quorum(4, 2) == 4 and write_quorum(3, 3) == 4 and write_quorum(8, 4) == 8
    e = Placement(topology(6), parity=3).locate("b", "k")
    assert (e.read_quorum, e.write_quorum) == (3, 4)
