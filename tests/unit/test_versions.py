"""Choosing the current version from partial commits, stragglers and delete markers."""

from __future__ import annotations

from gateway.objects.versions import UNDECIDED, choose_version
from proto import storage_pb2 as pb


def v(version_id: str, k: int = 4, marker: bool = False) -> pb.ObjectVersion:
    return pb.ObjectVersion(version_id=version_id, delete_marker=marker,
                            geometry=pb.Geometry(data_shards=k, parity_shards=2))


def test_highest_version_held_by_quorum_wins():
    answers = {"n1": [v("2"), v("1")], "n2": [v("2"), v("1")], "n3": [v("2"), v("1")],
               "n4": [v("2"), v("1")], "n5": [v("1")], "n6": []}
    assert choose_version(answers, read_quorum=4) == "2"


def test_partial_commit_below_quorum_is_invisible():
    # "3" committed on two nodes only (its writer failed): the older "2" stays current
    answers = {"n1": [v("3"), v("2")], "n2": [v("3"), v("2")], "n3": [v("2")],
               "n4": [v("2")], "n5": [v("2")], "n6": [v("2")]}
    assert choose_version(answers, read_quorum=4) == "2"


def test_no_quorum_at_all():
    answers = {"n1": [v("3")], "n2": [v("3")], "n3": [v("3")], "n4": [], "n5": [], "n6": []}
    assert choose_version(answers, read_quorum=4) is None


def test_waits_while_silent_nodes_could_change_the_answer():
    answers = {"n1": [v("3"), v("2")], "n2": [v("3"), v("2")], "n3": [v("3"), v("2")],
               "n4": [v("2")]}
    # "2" has quorum, but two silent nodes could lift "3" to quorum too
    assert choose_version(answers, read_quorum=4, pending=2) is UNDECIDED
    assert choose_version(answers, read_quorum=4, pending=0) == "2"
    agreed = {n: [v("2")] for n in ("n1", "n2", "n3", "n4", "n5")}
    assert choose_version(agreed, read_quorum=4, pending=1) == "2"  # a straggler can't matter


def test_delete_marker_is_a_version_like_any_other():
    answers = {n: [v("5", marker=True), v("4")] for n in ("n1", "n2", "n3", "n4")}
    assert choose_version(answers, read_quorum=4) == "5"


def test_quorum_follows_the_versions_own_geometry():
    # written when the set used 3+3: three holders are a read quorum for it
    answers = {"n1": [v("7", k=3)], "n2": [v("7", k=3)], "n3": [v("7", k=3)], "n4": []}
    assert choose_version(answers, read_quorum=4) == "7"


def test_silent_nodes_that_could_complete_a_version_leave_it_undecided():
    # v1 on 3 answering nodes, 2 silent: the silent ones may hold its 4th shard
    answers = {f"n{i}": [v("1")] for i in range(3)} | {"n3": []}
    assert choose_version(answers, read_quorum=4, pending=2) is UNDECIDED
    # with only 1 node silent and 2 holders, no version can reach 4: absent
    answers = {f"n{i}": [v("1")] for i in range(2)} | {"n2": [], "n3": [], "n4": []}
    assert choose_version(answers, read_quorum=4, pending=1) is None
