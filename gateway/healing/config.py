"""Healing's tunables: one frozen dataclass read from `TESSERA_HEAL_*` / `TESSERA_SCANNER_*`
environment variables (defaults in brackets below), plus the gateway's `--scanner` flag."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.healing.durable_queue import QueuePolicy

__all__ = ["ConfigError", "HealConfig"]

ENV_WORKERS = "TESSERA_HEAL_WORKERS"  # objects healed at once per gateway [2]
ENV_RATE = "TESSERA_HEAL_RATE"  # objects healed per second per gateway, 0 = unlimited [20]
ENV_QUEUE_SIZE = "TESSERA_HEAL_QUEUE_SIZE"  # waiting entries before new ones drop [100000]
ENV_MAX_ATTEMPTS = "TESSERA_HEAL_MAX_ATTEMPTS"  # failures before a dead letter [8]
ENV_SETTLE = "TESSERA_HEAL_SETTLE"  # seconds a fresh entry waits [1]
ENV_RETRY_MAX = "TESSERA_HEAL_RETRY_MAX"  # longest back-off after failures, seconds [3600]
ENV_DEFER_MAX = "TESSERA_HEAL_DEFER_MAX"  # longest wait for an offline node, seconds [60]
ENV_DANGLING_GRACE = "TESSERA_HEAL_DANGLING_GRACE"  # min age of a rolled-back version [300]
# a version younger than this may still be rolled back by its own PUT: not copied yet
# [2 x (node call deadline + 1 s) = 22]
ENV_COMMIT_WINDOW = "TESSERA_HEAL_COMMIT_WINDOW"
ENV_SCANNER_RATE = "TESSERA_SCANNER_RATE"  # keys compared per second, 0 = unlimited [100]
ENV_SCANNER_INTERVAL = "TESSERA_SCANNER_INTERVAL"  # pause between cycles, seconds [600]
ENV_SCANNER_DEEP = "TESSERA_SCANNER_DEEP"  # deep-verify every Nth cycle, 0 = never [0]
ENV_SCANNER_DEEP_RATE = "TESSERA_SCANNER_DEEP_RATE"  # deep checks per second [2]


class ConfigError(ValueError):
    """A healing variable has a value that is not a number in its range."""


@dataclass(frozen=True)
class HealConfig:
    """See the ENV_* constants above for each field's meaning and default."""

    workers: int = 2
    rate: float = 20.0
    queue_size: int = 100_000
    max_attempts: int = 8
    settle: float = 1.0
    retry_max: float = 3600.0
    defer_max: float = 60.0
    dangling_grace: float = 300.0
    commit_window: float | None = None
    scanner: bool = False
    scanner_rate: float = 100.0
    scanner_interval: float = 600.0
    scanner_deep_every: int = 0
    scanner_deep_rate: float = 2.0

    @classmethod
    def from_env(cls, *, scanner: bool = False,
                 environ: Mapping[str, str] | None = None) -> HealConfig:
        env = os.environ if environ is None else environ
        d = cls()

        def num(name: str, default: float, kind: type = float, low: float = 0) -> float:
            raw = env.get(name, "").strip()
            if not raw:
                return default
            try:
                value = kind(raw)
            except ValueError:
                raise ConfigError(f"{name}={raw!r} is not a number") from None
            if value < low:
                raise ConfigError(f"{name}={raw!r} must be at least {low}")
            return value

        return cls(
            workers=int(num(ENV_WORKERS, d.workers, int, 1)),
            rate=num(ENV_RATE, d.rate),
            queue_size=int(num(ENV_QUEUE_SIZE, d.queue_size, int, 1)),
            max_attempts=int(num(ENV_MAX_ATTEMPTS, d.max_attempts, int, 1)),
            settle=num(ENV_SETTLE, d.settle),
            retry_max=num(ENV_RETRY_MAX, d.retry_max, float, 1),
            defer_max=num(ENV_DEFER_MAX, d.defer_max, float, 0.1),
            dangling_grace=num(ENV_DANGLING_GRACE, d.dangling_grace),
            commit_window=num(ENV_COMMIT_WINDOW, -1.0) if env.get(ENV_COMMIT_WINDOW) else None,
            scanner=scanner,
            scanner_rate=num(ENV_SCANNER_RATE, d.scanner_rate),
            scanner_interval=num(ENV_SCANNER_INTERVAL, d.scanner_interval),
            scanner_deep_every=int(num(ENV_SCANNER_DEEP, d.scanner_deep_every, int)),
            scanner_deep_rate=num(ENV_SCANNER_DEEP_RATE, d.scanner_deep_rate),
        )

    def queue_policy(self) -> QueuePolicy:
        base = QueuePolicy()
        return QueuePolicy(capacity=self.queue_size, max_attempts=self.max_attempts,
                           settle=self.settle, retry_max=self.retry_max,
                           retry_base=min(base.retry_base, self.retry_max),
                           defer_max=self.defer_max,
                           defer_base=min(base.defer_base, self.defer_max))
