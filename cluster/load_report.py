"""What a chaos load did: requests per operation with their failures and latencies,
retries, gateway failovers, corruption, losses, bytes written and verified."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

__all__ = ["MIB", "LoadReport", "OpStats"]

MIB = 1024 * 1024


@dataclass
class OpStats:
    count: int = 0
    failed: int = 0
    max_latency: float = 0.0
    total_latency: float = 0.0

    def add(self, seconds: float, ok: bool) -> None:
        self.count += 1
        self.failed += 0 if ok else 1
        self.max_latency = max(self.max_latency, seconds)
        self.total_latency += seconds


@dataclass
class LoadReport:
    """Counts of one load (and of verify passes over it)."""

    ops: dict[str, OpStats] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # the first 50 messages
    failure_count: int = 0
    attempts: int = 0  # HTTP requests sent, retries included
    failovers: int = 0
    corrupt: int = 0
    lost: int = 0
    bytes_written: int = 0
    bytes_verified: int = 0
    objects_verified: int = 0
    seconds: float = 0.0
    time_to_heal: float | None = None
    extra: dict[str, object] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def requests(self) -> int:
        return sum(s.count for s in self.ops.values())

    @property
    def retries(self) -> int:
        return max(0, self.attempts - self.requests - self.failovers)

    @property
    def max_latency(self) -> float:
        return max((s.max_latency for s in self.ops.values()), default=0.0)

    @property
    def clean(self) -> bool:
        return self.failure_count == 0 and self.corrupt == 0 and self.lost == 0

    def record(self, op: str, seconds: float, ok: bool) -> None:
        with self._lock:
            self.ops.setdefault(op, OpStats()).add(seconds, ok)

    def fail(self, message: str, *, corrupt: bool = False, lost: bool = False) -> None:
        with self._lock:
            self.failure_count += 1
            self.corrupt += corrupt
            self.lost += lost
            if len(self.failures) < 50:
                self.failures.append(message)

    def add(self, **counts: int) -> None:
        with self._lock:
            for name, value in counts.items():
                setattr(self, name, getattr(self, name) + value)

    def summary(self, title: str = "chaos load") -> str:
        ops = ", ".join(f"{name} {s.count}" + (f" ({s.failed} failed)" if s.failed else "")
                        for name, s in sorted(self.ops.items()))
        lines = [
            f"{title}: {self.requests} requests in {self.seconds:.1f}s ({ops})",
            f"  failures {self.failure_count} (corrupt {self.corrupt}, lost {self.lost}), "
            f"retries {self.retries}, gateway failovers {self.failovers}",
            f"  written {self.bytes_written / MIB:.1f} MiB; verified {self.objects_verified} "
            f"objects, {self.bytes_verified / MIB:.1f} MiB bit-exact",
            "  max latency " + ", ".join(f"{name} {s.max_latency:.2f}s"
                                         for name, s in sorted(self.ops.items())),
        ]
        if self.time_to_heal is not None:
            lines.append(f"  time to heal {self.time_to_heal:.1f}s")
        lines += [f"  {name}: {value}" for name, value in self.extra.items()]
        lines += [f"  ! {message}" for message in self.failures[:10]]
        return "\n".join(lines)
