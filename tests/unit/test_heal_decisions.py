"""Healing's pure decisions: the quorum version, the dangling rule, which shards to rebuild."""

from __future__ import annotations

import time
import uuid

from gateway.erasure import BLOCK_SIZE
from gateway.healing.decisions import (
    ALL_PARTS,
    NodeView,
    judge_versions,
    shard_file_size,
    shard_repairs,
    version_age_ns,
)
from gateway.objects.metadata import ErasureRecord, ObjectMeta, PartRecord
from proto import storage_pb2 as pb

NODES = [f"node-{i}" for i in range(1, 7)]
HOUR = 3600 * 10**9
GRACE = 300 * 10**9


def vid(seconds_ago: float) -> str:
    """A UUIDv7 made `seconds_ago` seconds ago (text order = time order)."""
    ms = int((time.time() - seconds_ago) * 1000)
    return str(uuid.UUID(int=(ms << 80) | (0x7 << 76) | (0b10 << 62) | 12345))


def record(version_id: str, *, index: int = 0, marker: bool = False, k: int = 4,
           committed_ago: float = 3600.0, shards: list[pb.ShardFile] | None = None,
           inline: bool = False) -> pb.VersionRecord:
    v = pb.ObjectVersion(version_id=version_id, shard_index=index, delete_marker=marker,
                         mod_time_ns=time.time_ns() - int(committed_ago * 1e9),
                         is_inline=inline)
    if not marker:
        v.geometry.data_shards = k
    return pb.VersionRecord(version=v, shards=shards or [])


def views(held: dict[str, list[pb.VersionRecord]], silent: tuple[str, ...] = ()) -> list[NodeView]:
    return [NodeView(n, (), answered=False) if n in silent else NodeView(n, tuple(held.get(n, [])))
            for n in NODES]


def judge(vs: list[NodeView]):
    return judge_versions(vs, read_quorum=4, now_ns=time.time_ns(), grace_ns=GRACE)


def test_target_is_the_highest_version_a_read_quorum_holds():
    old, new = vid(7200), vid(3600)
    held = {n: [record(new), record(old)] for n in NODES[:4]}
    held.update({n: [record(old)] for n in NODES[4:]})
    verdict = judge(views(held))
    assert verdict.target == new and verdict.dangling == () and verdict.waiting == ()


def test_delete_marker_can_be_the_target():
    obj, marker = vid(7200), vid(3600)
    held = {n: [record(marker, marker=True), record(obj)] for n in NODES[:5]}
    held[NODES[5]] = [record(obj)]
    assert judge(views(held)).target == marker


def test_a_newer_version_below_quorum_with_everyone_answering_is_dangling():
    old, partial = vid(7200), vid(3600)
    held = {n: [record(old)] for n in NODES}
    for n in NODES[:3]:
        held[n].insert(0, record(partial))
    verdict = judge(views(held))
    assert verdict.target == old
    assert verdict.dangling == ((partial, tuple(NODES[:3])),)


def test_nothing_is_dangling_while_a_node_is_silent():
    old, partial = vid(7200), vid(3600)
    held = {n: [record(old)] for n in NODES}
    held[NODES[0]].insert(0, record(partial))
    verdict = judge(views(held, silent=(NODES[5],)))
    assert verdict.target == old
    assert verdict.dangling == () and verdict.waiting == (partial,)


def test_a_young_partial_version_may_be_a_commit_in_flight():
    old, fresh = vid(7200), vid(2)
    held = {n: [record(old)] for n in NODES}
    for n in NODES[:2]:
        held[n].insert(0, record(fresh, committed_ago=1))
    verdict = judge(views(held))
    assert verdict.dangling == () and verdict.waiting == (fresh,)


def test_version_age_uses_the_first_commit_not_later_heal_copies():
    version = vid(7200)
    healed_copy = record(version, committed_ago=1)
    original = record(version, committed_ago=7200)
    assert version_age_ns(version, [healed_copy, original], time.time_ns()) > HOUR
    # a node clock behind makes the version look young, never old
    assert version_age_ns(vid(1), [original], time.time_ns()) < 5 * 10**9


def test_no_quorum_anywhere_rolls_every_partial_version_back():
    first = vid(3600)
    held = {n: [record(first)] for n in NODES[:2]}
    verdict = judge(views(held))
    assert verdict.target is None and verdict.dangling == ((first, tuple(NODES[:2])),)


def test_versions_below_the_target_are_left_to_the_nodes_collector():
    ancient, current = vid(9000), vid(3600)
    held = {n: [record(current)] for n in NODES}
    held[NODES[0]].append(record(ancient))
    assert judge(views(held)).dangling == ()


def test_a_node_without_the_bucket_answers_definitively():
    old, partial = vid(7200), vid(3600)
    held = {n: [record(old)] for n in NODES[:5]}
    held[NODES[0]].insert(0, record(partial))
    vs = views(held)
    vs[5] = NodeView(NODES[5], (), has_bucket=False)
    assert judge(vs).dangling == ((partial, (NODES[0],)),)


# ---- shard repairs ----

ERASURE = ErasureRecord(4, 2, BLOCK_SIZE, "xxh3-128", 0, tuple(NODES))


def meta(*stored: int) -> ObjectMeta:
    parts = tuple(PartRecord(i, s, s, "e", f"d{i}") for i, s in enumerate(stored, 1))
    return ObjectMeta(size=sum(stored), etag="e", mod_time_ns=1, erasure=ERASURE, parts=parts,
                      multipart=len(parts) > 1)


def files(m: ObjectMeta, **overrides: dict) -> list[pb.ShardFile]:
    g = m.erasure.geometry
    out = []
    for p in m.parts:
        size = g.shard_size(p.stored_size)
        f = pb.ShardFile(part_number=p.number, data_id=p.data_id, shard_size=size,
                         file_size=shard_file_size(size, g.shard_block_size, "xxh3-128"),
                         present=True)
        for name, value in overrides.get(f"part{p.number}", {}).items():
            setattr(f, name, value)
        out.append(f)
    return out


def test_whole_version_rebuilt_when_missing_or_under_another_index():
    m = meta(3 * BLOCK_SIZE)
    assert shard_repairs(m, 2, None) == ALL_PARTS
    assert shard_repairs(m, 2, record("v", index=3, shards=files(m))) == ALL_PARTS


def test_intact_shard_needs_nothing():
    m = meta(3 * BLOCK_SIZE + 5, 100)
    assert shard_file_size(m.erasure.geometry.shard_size(100), 262_272, "xxh3-128") == 25 + 16
    assert shard_repairs(m, 1, record("v", index=1, shards=files(m))) == frozenset()


def test_only_the_damaged_parts_are_rebuilt():
    m = meta(BLOCK_SIZE, BLOCK_SIZE, 10)
    short = files(m, part2={"file_size": 100})
    assert shard_repairs(m, 0, record("v", shards=short)) == {2}
    missing = files(m, part3={"present": False, "file_size": 0})
    assert shard_repairs(m, 0, record("v", shards=missing)) == {3}
    verify = pb.VerifyShardReply(ok=False, missing_parts=[1],
                                 bad_blocks=[pb.VerifyShardReply.BadBlock(part_number=3,
                                                                          block=0)])
    assert shard_repairs(m, 0, record("v", shards=files(m)), verify) == {1, 3}
    assert shard_repairs(m, 0, record("v", shards=files(m)[:2])) == ALL_PARTS


def test_inline_and_delete_markers():
    inline = ObjectMeta(size=10, etag="e", mod_time_ns=1, erasure=ERASURE,
                        inline_hashes=(b"h",) * 6)
    assert shard_repairs(inline, 0, record("v", inline=True), inline_ok=True) == frozenset()
    assert shard_repairs(inline, 0, record("v", inline=True), inline_ok=False) == ALL_PARTS
    assert shard_repairs(inline, 0, record("v", inline=False)) == ALL_PARTS
    marker = ObjectMeta(size=0, etag="", mod_time_ns=1, erasure=ERASURE, delete_marker=True)
    assert shard_repairs(marker, 4, record("v", index=4, marker=True)) == frozenset()
    assert shard_repairs(marker, 4, None) == ALL_PARTS
