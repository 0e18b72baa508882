"""EndpointHealth: sideline after failures, one probe after the backoff."""

from __future__ import annotations

from common.endpoint_health import EndpointHealth


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_failure_sidelines_then_exactly_one_probe() -> None:
    clock = _Clock()
    health = EndpointHealth("a", backoff=30, clock=clock)
    assert health.acquire()
    health.failure("refused")
    assert health.state == "sidelined" and not health.acquire()
    clock.now = 30
    assert health.acquire()          # the probe
    assert health.state == "probing"
    assert not health.acquire()      # nobody else while it is out
    health.failure("still refused")  # failed probe: another full backoff
    clock.now = 59
    assert not health.acquire()
    clock.now = 60
    assert health.acquire()
    health.success()
    assert health.state == "up" and health.acquire() and health.acquire()
    snap = health.snapshot()
    assert (snap.failures, snap.successes, snap.last_error) == (2, 1, "still refused")


def test_error_limit_and_abandoned_probe() -> None:
    clock = _Clock()
    health = EndpointHealth("a", error_limit=3, backoff=10, clock=clock)
    health.failure()
    health.failure()
    assert health.state == "up"
    health.success()
    for _ in range(3):
        health.failure()
    assert health.state == "sidelined"
    clock.now = 10
    assert health.acquire()  # probe handed out, caller never reports back
    clock.now = 19
    assert not health.acquire()
    clock.now = 20
    assert health.acquire()  # the abandoned probe expired
