"""The request gate (MINIO_API_REQUESTS_MAX / _DEADLINE): places, waiting, refusal, metrics."""

from __future__ import annotations

import asyncio
import time

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from gateway.config import ConfigError, load_config
from gateway.s3.admission import REQUEST_MEMORY, GateCollector, RequestGate, auto_requests_max
from gateway.s3.errors import S3Error

CREDS = {"MINIO_ROOT_USER": "admin", "MINIO_ROOT_PASSWORD": "password123"}
MEMORY = ["--listen", "127.0.0.1:9000", "--memory"]


def test_one_more_request_waits_for_a_place_then_gets_it():
    async def go():
        gate = RequestGate(2, deadline=2.0)
        release = asyncio.Event()
        order = []

        async def hold(name):
            async with gate.admit():
                order.append(name)
                await release.wait()

        holders = [asyncio.create_task(hold(n)) for n in ("a", "b")]
        await asyncio.sleep(0.01)
        late = asyncio.create_task(hold("c"))
        await asyncio.sleep(0.05)
        assert (gate.active, gate.waiting, order) == (2, 1, ["a", "b"])
        release.set()
        await asyncio.gather(*holders, late)
        assert order == ["a", "b", "c"] and gate.active == 0 and gate.refused == 0
    asyncio.run(go())


def test_past_the_deadline_it_is_refused_with_slowdown():
    async def go():
        gate = RequestGate(1, deadline=0.1)
        async with gate.admit():
            started = time.monotonic()
            with pytest.raises(S3Error) as refused:
                async with gate.admit():
                    pass
            assert 0.09 <= time.monotonic() - started < 1
        assert refused.value.code == "SlowDown" and refused.value.status == 503
        assert (gate.refused, gate.waiting, gate.active) == (1, 0, 0)
        async with gate.admit():  # the place is free again
            assert gate.active == 1
    asyncio.run(go())


def test_a_failing_request_gives_its_place_back():
    async def go():
        gate = RequestGate(1, deadline=0.0)
        with pytest.raises(ValueError):
            async with gate.admit():
                raise ValueError("handler failed")
        async with gate.admit():
            assert gate.active == 1
    asyncio.run(go())


def test_metrics():
    gate = RequestGate(3, deadline=1.0)
    gate.refused = 2
    registry = CollectorRegistry()
    registry.register(GateCollector(gate))
    text = generate_latest(registry).decode()
    assert "tessera_s3_requests_max 3.0" in text
    assert "tessera_s3_requests_waiting 0.0" in text
    assert "tessera_s3_requests_refused_total 2.0" in text


def test_auto_limit_follows_memory():
    assert auto_requests_max(24 << 30) == (24 << 30) // 2 // REQUEST_MEMORY == 384
    assert auto_requests_max(256 << 20) == 16  # never fewer than 16


@pytest.mark.parametrize(("env", "limit", "deadline"), [
    ({}, 0, 10.0),
    ({"MINIO_API_REQUESTS_MAX": "1600", "MINIO_API_REQUESTS_DEADLINE": "2m"}, 1600, 120.0),
    ({"MINIO_API_REQUESTS_DEADLINE": "500ms"}, 0, 0.5),
    ({"MINIO_API_REQUESTS_DEADLINE": "3"}, 0, 3.0),
])
def test_minio_variables(env, limit, deadline):
    config = load_config(MEMORY, {**CREDS, **env})
    assert (config.requests_max, config.requests_deadline) == (limit, deadline)


@pytest.mark.parametrize(("env", "message"), [
    ({"MINIO_API_REQUESTS_MAX": "-1"}, "MINIO_API_REQUESTS_MAX"),
    ({"MINIO_API_REQUESTS_MAX": "many"}, "whole number"),
    ({"MINIO_API_REQUESTS_DEADLINE": "soon"}, "duration"),
    ({"MINIO_API_REQUESTS_DEADLINE": "2h"}, "at most 1h"),
])
def test_bad_values_stop_start_up_with_one_line(env, message):
    with pytest.raises(ConfigError, match=message) as exc:
        load_config(MEMORY, {**CREDS, **env})
    assert "\n" not in str(exc.value)
