"""The KES client pool against three real KES servers while they are killed and paused:
zero failed calls while one server lives, every call bounded by the attempt timeout, and one
clear error naming every endpoint when none answers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster.launcher import Cluster
from kes.client import KESClient, KESConfig
from kes.errors import KESUnavailable
from tests.conftest import running_cluster

pytestmark = pytest.mark.chaos

KEY = "minio-default-key"
ATTEMPT_TIMEOUT = 1.0


@pytest.fixture(scope="module")
def pool(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("kes-chaos"), nodes=0, gateways=0,
                         kes=3) as cluster:
        yield cluster


def _config(cluster: Cluster, **overrides: float) -> KESConfig:
    env = cluster.env_vars()
    base = KESConfig.from_env(env)
    fields = {**base.__dict__, "timeout": ATTEMPT_TIMEOUT, "call_timeout": 4.0, **overrides}
    return KESConfig(**fields)


def _restart_stopped(cluster: Cluster) -> None:
    for name in cluster.names("kes"):
        state = cluster.state_of(name)
        if state == "paused":
            cluster.resume(name)
        elif state == "down":
            cluster.start(name)


async def _pairs(kes: KESClient, count: int, concurrency: int,
                 on_progress=None) -> tuple[list[BaseException], list[float]]:
    """`count` generate+decrypt pairs; returns the failures and each pair's duration."""
    failures: list[BaseException] = []
    durations: list[float] = []
    done = 0
    slots = asyncio.Semaphore(concurrency)

    async def pair(i: int) -> None:
        nonlocal done
        context = f'{{"bucket":"bucket/object-{i}"}}'.encode()
        async with slots:
            start = time.monotonic()
            try:
                plain, sealed = await kes.generate_key(KEY, context)
                assert await kes.decrypt(KEY, sealed, context) == plain
            except (Exception, AssertionError) as exc:
                failures.append(exc)
            durations.append(time.monotonic() - start)
            done += 1
            if on_progress:
                await on_progress(done)

    await asyncio.gather(*(pair(i) for i in range(count)))
    return failures, durations


def test_kill_two_of_three_during_500_pairs_fails_nothing(pool: Cluster) -> None:
    killed: list[str] = []

    async def progress(done: int) -> None:
        for at, name in ((100, "kes-1"), (250, "kes-2")):
            if done == at and name not in killed:
                killed.append(name)
                await asyncio.to_thread(pool.kill, name)

    async def run() -> None:
        async with KESClient(_config(pool)) as kes:
            failures, _ = await _pairs(kes, 500, 8, progress)
            assert failures == []
            stats = kes.statistics()
            assert stats.calls == 1000 and stats.unavailable == 0
            states = {e.name: e.state for e in stats.endpoints}
            assert list(states.values()).count("up") >= 1

    try:
        asyncio.run(run())
        assert killed == ["kes-1", "kes-2"]
        assert [pool.state_of(n) for n in ("kes-1", "kes-2", "kes-3")] == ["down", "down",
                                                                          "running"]
    finally:
        _restart_stopped(pool)


def test_a_paused_server_costs_at_most_one_attempt_timeout(pool: Cluster) -> None:
    async def run() -> None:
        async with KESClient(_config(pool)) as kes:
            await _pairs(kes, 30, 4)  # warm keep-alive connections to all three
            pool.pause("kes-2")
            failures, durations = await _pairs(kes, 200, 4)
            assert failures == []
            # a call that met the paused server paid one attempt timeout, then failed over
            assert max(durations) < 2 * ATTEMPT_TIMEOUT + 0.5
            slow = [d for d in durations if d > ATTEMPT_TIMEOUT / 2]
            assert len(slow) <= 8  # only calls in flight before it was sidelined
            paused = next(e for e in kes.statistics().endpoints if e.name.endswith(
                pool.record("kes-2").address))
            assert paused.state == "sidelined" and "no answer within" in paused.last_error

    try:
        asyncio.run(run())
    finally:
        _restart_stopped(pool)


def test_all_down_is_one_clear_error_within_the_timeout(pool: Cluster) -> None:
    config = _config(pool)

    async def expect_unavailable(limit: float, reason: str) -> None:
        async with KESClient(config) as kes:
            start = time.monotonic()
            with pytest.raises(KESUnavailable) as err:
                await kes.generate_key(KEY, b"{}")
            assert time.monotonic() - start < limit
            text = str(err.value)
            assert "\n" not in text and text.startswith("no KES endpoint answered")
            for record in pool.by_role("kes"):
                assert record.address in text
            assert reason in text

    try:
        for name in pool.names("kes"):
            pool.pause(name)
        asyncio.run(expect_unavailable(config.call_timeout + 0.5, "within"))
        for name in pool.names("kes"):
            pool.kill(name)
        asyncio.run(expect_unavailable(1.0, "connection refused"))
    finally:
        _restart_stopped(pool)
    # and the pool is back: a new client works at once
    asyncio.run(_back(config))


async def _back(config: KESConfig) -> None:
    async with KESClient(config) as kes:
        plain, sealed = await kes.generate_key(KEY, b"{}")
        assert await kes.decrypt(KEY, sealed, b"{}") == plain


def test_env_file_of_the_launcher_configures_the_client(pool: Cluster) -> None:
    lines = Path(pool.env_path).read_text().splitlines()
    env = dict(line.removeprefix("export ").split("=", 1) for line in lines[1:])
    config = KESConfig.from_env(env)
    assert len(config.endpoints) == 3 and config.key_name == KEY
    asyncio.run(_back(config))
