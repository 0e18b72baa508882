"""The server's Prometheus metrics under KES's exact names (no `_total` suffix, as Go's client)."""

from __future__ import annotations

import os
import threading
import time
from collections import Counter

__all__ = ["ServerMetrics", "rss_bytes"]

_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 1.5, 3.0, 5.0, 10.0)


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class ServerMetrics:
    """Request counters by status class, active requests, response-time histogram."""

    def __init__(self) -> None:
        self.started = time.time()
        self._lock = threading.Lock()
        self._codes: dict[str, Counter[int]] = {"success": Counter(), "error": Counter(),
                                                "failure": Counter()}
        self._buckets = [0] * len(_BUCKETS)
        self._count = 0
        self._sum = 0.0
        self.active = 0
        self.error_events = 0
        self.audit_events = 0

    def begin(self) -> None:
        with self._lock:
            self.active += 1

    def end(self, status: int, seconds: float) -> None:
        kind = "success" if status < 400 else "error" if status < 500 else "failure"
        with self._lock:
            self.active -= 1
            self._codes[kind][status] += 1
            self._count += 1
            self._sum += seconds
            for i, bound in enumerate(_BUCKETS):
                if seconds <= bound:
                    self._buckets[i] += 1

    def render(self) -> str:
        """Prometheus text exposition format 0.0.4."""
        out: list[str] = []
        with self._lock:
            for kind, help_text in (("success", "2xx"), ("error", "4xx"), ("failure", "5xx")):
                name = f"kes_http_request_{kind}"
                out += [f"# HELP {name} Number of requests that returned {help_text}.",
                        f"# TYPE {name} counter"]
                out += [f'{name}{{code="{code}"}} {n}'
                        for code, n in sorted(self._codes[kind].items())]
            out += ["# HELP kes_http_request_active Number of active requests.",
                    "# TYPE kes_http_request_active gauge",
                    f"kes_http_request_active {self.active}"]
            out += ["# HELP kes_http_response_time Response time in seconds.",
                    "# TYPE kes_http_response_time histogram"]
            out += [f'kes_http_response_time_bucket{{le="{b}"}} {n}'
                    for b, n in zip(_BUCKETS, self._buckets, strict=True)]
            out += [f'kes_http_response_time_bucket{{le="+Inf"}} {self._count}',
                    f"kes_http_response_time_sum {self._sum}",
                    f"kes_http_response_time_count {self._count}"]
        for name, kind, value in self._system():
            out += [f"# TYPE {name} {kind}", f"{name} {value}"]
        return "\n".join(out) + "\n"

    def _system(self) -> list[tuple[str, str, float]]:
        cpus = os.cpu_count() or 1
        return [
            ("kes_log_error_events", "counter", self.error_events),
            ("kes_log_audit_events", "counter", self.audit_events),
            ("kes_system_up_time", "gauge", round(time.time() - self.started, 3)),
            ("kes_system_num_cpu", "gauge", cpus),
            ("kes_system_num_cpu_used", "gauge", len(os.sched_getaffinity(0))),
            ("kes_system_num_threads", "gauge", threading.active_count()),
            ("kes_system_mem_heap_used", "gauge", rss_bytes()),
            ("kes_system_mem_heap_objects", "gauge", 0),
            ("kes_system_mem_stack_used", "gauge", threading.active_count() * 512 * 1024),
        ]
