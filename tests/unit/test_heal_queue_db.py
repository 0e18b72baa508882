"""The durable heal queue: dedupe, bounds, per-entry back-off, dead letters, restarts; and the
worker's handling of each heal outcome."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gateway.heal_queue import HealItem
from gateway.healing.durable_queue import DurableHealQueue, QueuePolicy
from gateway.healing.healer import HealResult
from gateway.healing.worker import HealWorker


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def item(key: str, reason: str = "write-missed", nodes: tuple[str, ...] = ("node-2",),
         version: str = "v1") -> HealItem:
    return HealItem("b", key, version, reason, nodes)


def open_queue(path: Path | None, clock: Clock, **policy: object) -> DurableHealQueue:
    defaults = dict(settle=1.0, retry_base=10.0, retry_max=100.0, defer_base=2.0,
                    defer_max=8.0, max_attempts=3)
    defaults.update(policy)
    return DurableHealQueue(path, QueuePolicy(**defaults), clock=clock)  # type: ignore[arg-type]


def claim(queue: DurableHealQueue, limit: int = 10):
    return asyncio.run(queue.claim(limit))


def test_reports_of_one_object_merge_and_survive_a_restart(tmp_path: Path, clock: Clock):
    queue = open_queue(tmp_path / "heal.db", clock)
    queue.record(item("k", nodes=("node-2",)))
    queue.record(item("k", "read-corrupt", nodes=("node-5",), version="v2"))
    queue.record(item("other"))
    queue.close()
    reopened = open_queue(tmp_path / "heal.db", clock)
    try:
        entries = {e.key: e for e in reopened.entries()}
        assert set(entries) == {"k", "other"}
        assert entries["k"].nodes == ("node-2", "node-5")
        assert entries["k"].deep and entries["k"].version_id == "v2"
        assert not entries["other"].deep
        assert reopened.counts().backlog == 2
    finally:
        reopened.close()


def test_entries_wait_to_settle_and_are_claimed_once(clock: Clock):
    queue = open_queue(None, clock)
    try:
        queue.record(item("k"))
        assert claim(queue) == []
        clock.now += 1.5
        (entry,) = claim(queue)
        assert entry.key == "k"
        assert claim(queue) == []  # in flight
        assert queue.counts().in_flight == 1
        asyncio.run(queue.done(entry))
        assert queue.counts().backlog == 0 and queue.entries() == []
    finally:
        queue.close()


def test_a_report_during_a_heal_keeps_the_entry(clock: Clock):
    queue = open_queue(None, clock)
    try:
        queue.record(item("k"))
        clock.now += 2
        (entry,) = claim(queue)
        queue.record(item("k", nodes=("node-4",)))  # new damage while healing
        asyncio.run(queue.done(entry))
        clock.now += 2
        (again,) = claim(queue)
        assert again.nodes == ("node-2", "node-4")
    finally:
        queue.close()


def test_failures_back_off_then_become_dead_letters(clock: Clock):
    queue = open_queue(None, clock, max_attempts=3)
    try:
        queue.record(item("bad"))
        queue.record(item("good"))
        clock.now += 2
        for attempt in range(3):
            entries = {e.key: e for e in claim(queue)}
            assert "bad" in entries, attempt
            asyncio.run(queue.retry(entries["bad"], "boom"))
            if "good" in entries:
                asyncio.run(queue.done(entries["good"]))
            assert claim(queue) == []  # backing off: nothing else is due
            clock.now += 10 * 2 ** attempt * 1.3
        counts = queue.counts()
        assert (counts.backlog, counts.dead) == (0, 1)
        assert [e.key for e in queue.entries(dead=True)] == ["bad"]
        assert claim(queue) == []
        queue.record(item("bad", "read-missing"))  # new evidence revives it
        clock.now += 2
        assert [e.key for e in claim(queue)] == ["bad"]
        assert queue.counts().dead == 0
    finally:
        queue.close()


def test_waiting_for_an_offline_node_is_not_a_failure(clock: Clock):
    queue = open_queue(None, clock, max_attempts=2)
    try:
        queue.record(item("k"))
        clock.now += 2
        for _ in range(6):
            (entry,) = claim(queue)
            asyncio.run(queue.defer(entry, "waiting for node-2"))
            clock.now += 8 * 1.3  # the capped pause
        assert queue.counts().dead == 0 and queue.counts().backlog == 1
    finally:
        queue.close()


def test_a_full_queue_drops_new_objects_but_still_merges(clock: Clock):
    queue = open_queue(None, clock, capacity=2)
    try:
        for key in ("a", "b", "c"):
            queue.record(item(key))
        queue.record(item("a", nodes=("node-6",)))
        queue.flush()
        counts = queue.counts()
        assert (counts.backlog, counts.dropped, counts.recorded) == (2, 1, 4)
        assert {e.key: e.nodes for e in queue.entries()} == {"a": ("node-2", "node-6"),
                                                             "b": ("node-2",)}
    finally:
        queue.close()


def test_state_is_kept(tmp_path: Path, clock: Clock):
    queue = open_queue(tmp_path / "heal.db", clock)
    asyncio.run(queue.save_state("scanner", {"cycle": 3, "after": "k"}))
    queue.close()
    queue = open_queue(tmp_path / "heal.db", clock)
    try:
        assert asyncio.run(queue.load_state("scanner")) == {"cycle": 3, "after": "k"}
    finally:
        queue.close()


class ScriptedHealer:
    """Answers heal_object with a scripted outcome per key."""

    def __init__(self, outcomes: dict[str, HealResult]):
        self.outcomes = outcomes
        self.calls: list[tuple[str, object]] = []

    async def heal_object(self, bucket: str, key: str, *, deep: object = False) -> HealResult:
        self.calls.append((key, deep))
        return self.outcomes[key]


def test_worker_settles_each_outcome(clock: Clock):
    outcomes = {
        "fixed": HealResult("b", "fixed", "v", repaired=("node-2",), shards_rebuilt=1),
        "offline": HealResult("b", "offline", "v", offline=("node-3",)),
        "broken": HealResult("b", "broken", error="no quorum"),
    }
    queue = open_queue(None, clock, max_attempts=5)
    healer = ScriptedHealer(outcomes)

    async def go() -> None:
        worker = HealWorker(healer, queue, concurrency=2, rate=0, poll=0.01)  # type: ignore[arg-type]
        worker.start()
        try:
            for _ in range(200):
                if len(healer.calls) >= 3 and queue.counts().in_flight == 0:
                    break
                await asyncio.sleep(0.01)
        finally:
            await worker.close()

    try:
        queue.record(item("fixed"))
        queue.record(item("offline"))
        queue.record(item("broken", "read-corrupt", nodes=("node-4",)))
        clock.now += 2
        asyncio.run(go())
        assert sorted(healer.calls, key=str) == [("broken", {"node-4"}), ("fixed", False),
                                                 ("offline", False)]
        left = {e.key: e for e in queue.entries()}
        assert set(left) == {"offline", "broken"}
        assert (left["offline"].defers, left["offline"].attempts) == (1, 0)
        assert (left["broken"].defers, left["broken"].attempts) == (0, 1)
    finally:
        queue.close()


def test_service_statistics_show_the_backlog_and_no_eta_while_idle(clock: Clock):
    from gateway.healing import HealConfig, HealService
    from tests.unit.memory_cluster import memory_layer

    layer, _, _ = memory_layer()
    queue = open_queue(None, clock)
    service = HealService(layer.ctx, queue, HealConfig(scanner=True))
    try:
        queue.record(item("a"))
        queue.record(item("a", nodes=("node-3",)))
        queue.record(item("b"))
        queue.flush()
        stats = service.statistics()
        assert (stats.backlog, stats.queued, stats.merged, stats.dropped) == (2, 3, 1, 0)
        assert stats.eta_seconds is None and stats.heal_rate == 0
        assert stats.scanner is not None and stats.scanner.position.cycle == 1
    finally:
        queue.close()
        layer.ctx.executor.shutdown()


def test_heal_config_from_the_environment():
    from gateway.healing.config import ConfigError, HealConfig

    config = HealConfig.from_env(environ={"TESSERA_HEAL_WORKERS": "4",
                                          "TESSERA_HEAL_DEFER_MAX": "1.5",
                                          "TESSERA_SCANNER_DEEP": "3"}, scanner=True)
    assert (config.workers, config.defer_max, config.scanner_deep_every) == (4, 1.5, 3)
    assert config.queue_policy().defer_base == 1.5 and config.commit_window is None
    assert HealConfig.from_env(environ={"TESSERA_HEAL_COMMIT_WINDOW": "0"}).commit_window == 0
    for bad in ({"TESSERA_HEAL_WORKERS": "0"}, {"TESSERA_HEAL_RATE": "fast"}):
        with pytest.raises(ConfigError):
            HealConfig.from_env(environ=bad)
