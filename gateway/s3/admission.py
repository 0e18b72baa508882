"""How many S3 requests a gateway serves at once (MinIO's MINIO_API_REQUESTS_MAX): one more
waits up to MINIO_API_REQUESTS_DEADLINE for a place, then answers 503 SlowDown.

A request's memory is bounded (its shard streams' queues, ~32 MiB for a large object), so a
bound on requests in flight bounds the gateway's memory whatever the number of clients.
Health and metrics requests are never held back: a load balancer must see a busy gateway
as alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from .errors import S3Error

__all__ = ["REQUEST_MEMORY", "GateCollector", "RequestGate", "auto_requests_max"]

REQUEST_MEMORY = 32 << 20  # peak gateway memory of one large PUT or GET (6 shard streams)
DEFAULT_DEADLINE = 10.0  # seconds, as MinIO's default

def _memory_bytes() -> int:
    """This machine's memory, or the cgroup's limit when that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            total = min(total, int(limit))
    return total


def auto_requests_max(memory: int | None = None) -> int:
    """MINIO_API_REQUESTS_MAX=0 (the default): as many requests as half the memory holds at
    REQUEST_MEMORY each, at least 16."""
    memory = _memory_bytes() if memory is None else memory
    return max(16, memory // 2 // REQUEST_MEMORY)


class RequestGate:
    """At most `limit` requests inside at once; a request that finds no place waits up to
    `deadline` seconds for one (0: refused at once) and is then refused with 503 SlowDown."""

    def __init__(self, limit: int, deadline: float = DEFAULT_DEADLINE):
        if limit < 1:
            raise ValueError("a gate needs at least one place")
        self.limit = limit
        self.deadline = deadline
        self._places = asyncio.Semaphore(limit)
        self.active = 0
        self.waiting = 0
        self.refused = 0

    @contextlib.asynccontextmanager
    async def admit(self) -> AsyncIterator[None]:
        if self._places.locked():
            self.waiting += 1
            try:
                async with asyncio.timeout(self.deadline):
                    await self._places.acquire()
            except TimeoutError:
                self.refused += 1
                raise S3Error("SlowDown", f"The gateway is serving its maximum of {self.limit} "
                                          "requests; please retry.") from None
            finally:
                self.waiting -= 1
        else:
            await self._places.acquire()
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1
            self._places.release()


class GateCollector:
    """The gate's numbers for Prometheus, read at scrape time."""

    def __init__(self, gate: RequestGate):
        self.gate = gate

    def collect(self) -> Iterator[Metric]:
        g = self.gate
        yield GaugeMetricFamily("tessera_s3_requests_max", "S3 requests this gateway serves "
                                "at once (MINIO_API_REQUESTS_MAX)", value=g.limit)
        yield GaugeMetricFamily("tessera_s3_requests_waiting", "S3 requests waiting for a "
                                "place (MINIO_API_REQUESTS_DEADLINE)", value=g.waiting)
        yield CounterMetricFamily("tessera_s3_requests_refused", "S3 requests answered 503 "
                                  "SlowDown for want of a place", value=g.refused)
