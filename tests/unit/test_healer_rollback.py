"""A dangling version is rolled back only when two surveys a moment apart both call it
dangling with the same holders (the nodes' answers are scripted; the rest is the real Healer)."""

from __future__ import annotations

import asyncio

import pytest

from gateway.healing import healer as healer_module
from gateway.healing.healer import Healer, HealResult

from .memory_cluster import memory_layer
from .test_heal_decisions import NODES, record, vid, views


@pytest.fixture
def scripted(monkeypatch):
    """A Healer whose surveys return the given views in turn and whose rollbacks are recorded."""
    monkeypatch.setattr(healer_module, "DANGLING_RECHECK", 0.0)

    def make(*surveys):
        layer, _, _ = memory_layer()
        healer = Healer(layer.ctx)
        answers = iter(surveys)
        rolled: list[tuple[str, tuple[str, ...]]] = []

        async def survey(bucket, key, eset):
            return next(answers)

        async def roll_back(bucket, key, version_id, holders, eset):
            rolled.append((version_id, holders))

        monkeypatch.setattr(healer, "_survey", survey)
        monkeypatch.setattr(healer, "_roll_back", roll_back)
        monkeypatch.setattr(healer, "_repair", _no_repair)
        return healer, rolled
    return make


async def _no_repair(bucket, key, views, version_id, deep):
    return HealResult(bucket, key, version_id)  # the old version is whole on every node


def _held(old: str, partial: str, holders: int) -> dict:
    held = {n: [record(old, index=i)] for i, n in enumerate(NODES)}
    for n in NODES[:holders]:
        held[n].insert(0, record(partial, index=NODES.index(n)))
    return held


def test_a_version_dangling_in_both_surveys_is_rolled_back(scripted):
    old, partial = vid(7200), vid(3600)
    healer, rolled = scripted(views(_held(old, partial, 3)), views(_held(old, partial, 3)),
                              views(_held(old, "", 0)))
    result = asyncio.run(healer.heal_object("b", "k"))
    assert rolled == [(partial, tuple(NODES[:3]))]
    assert result.rolled_back == ((partial, tuple(NODES[:3])),)


def test_a_version_whose_holders_changed_between_surveys_is_left_alone(scripted):
    old, partial = vid(7200), vid(3600)
    # 3 holders, then 2 a moment later: the nodes' answers are moving, so nothing is deleted
    healer, rolled = scripted(views(_held(old, partial, 3)), views(_held(old, partial, 2)))
    result = asyncio.run(healer.heal_object("b", "k"))
    assert rolled == []
    assert result.outcome == "deferred" and partial in result.waiting
