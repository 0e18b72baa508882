"""What the health endpoints and the cluster gauges report, measured at most once a second.

`HealthMonitor.snapshot()` asks every storage node for its `Stat` (one call each, all at once,
2 s deadline) and every KES endpoint for its status, and remembers the answer for `ttl`
seconds; concurrent callers share one measurement, so a scraper or a load balancer probing
often costs the nodes nothing extra.

    live           this process serves (never depends on other processes: MinIO learned that
                   tying liveness to peers keeps a forming cluster from ever starting)
    ready          every erasure set has its write quorum, and (when a KMS is configured) at
                   least one KES endpoint answers: what a load balancer should route on
    cluster        every set has its write quorum (503 otherwise; X-Minio-Write-Quorum)
    cluster/read   every set has its read quorum (X-Minio-Read-Quorum)
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from gateway.ops.kms_probe import KMSEndpointProbe, KMSProbe
from gateway.placement import read_quorum, write_quorum
from proto import storage_pb2 as pb

__all__ = ["HealthMonitor", "HealthSnapshot", "NodeStat", "SetState"]

STAT_DEADLINE = 2.0  # seconds a node has to answer Stat before it counts as offline
DEFAULT_TTL = 1.0


@dataclass(frozen=True)
class NodeStat:
    """One node's answer to Stat, or why it gave none (`error`)."""

    name: str
    online: bool
    error: str = ""
    disk_total: int = 0
    disk_free: int = 0
    objects: int = 0
    bytes: int = 0
    pending_writes: int = 0
    uptime: float = 0.0


@dataclass(frozen=True)
class SetState:
    index: int
    nodes: tuple[str, ...]
    online: tuple[str, ...]
    write_quorum: int
    read_quorum: int

    @property
    def writable(self) -> bool:
        return len(self.online) >= self.write_quorum

    @property
    def readable(self) -> bool:
        return len(self.online) >= self.read_quorum


@dataclass(frozen=True)
class HealthSnapshot:
    taken_at: float  # time.time()
    nodes: tuple[NodeStat, ...]
    sets: tuple[SetState, ...]
    kms: tuple[KMSEndpointProbe, ...] | None  # None: no KMS configured

    @property
    def writable(self) -> bool:
        return all(s.writable for s in self.sets)

    @property
    def readable(self) -> bool:
        return all(s.readable for s in self.sets)

    @property
    def kms_reachable(self) -> bool:
        return self.kms is None or any(p.reachable for p in self.kms)

    @property
    def ready(self) -> bool:
        return self.writable and self.kms_reachable

    def why_not_writable(self) -> str:
        """The sets below write quorum, in one line ("" when every set is writable)."""
        return "; ".join(f"erasure set {s.index} has {len(s.online)} of {len(s.nodes)} nodes "
                         f"online, below its write quorum of {s.write_quorum}"
                         for s in self.sets if not s.writable)

    def why_not_ready(self) -> str:
        """One line for the 503 body of /minio/health/ready."""
        reasons = [self.why_not_writable()] if not self.writable else []
        if not self.kms_reachable:
            reasons.append("no KES endpoint answers (" + "; ".join(
                f"{p.endpoint}: {p.detail}" for p in self.kms or ()) + ")")
        return "; ".join(reasons) or "ready"


class HealthMonitor:
    """Measures node and KES health for a layer (anything without a `ctx` node pool, like the
    in-memory development layer, has no nodes and is always whole)."""

    def __init__(self, layer: Any, kms_probe: KMSProbe | None = None, *,
                 ttl: float = DEFAULT_TTL):
        self.layer = layer
        self.kms_probe = kms_probe
        self.ttl = ttl
        self._last: HealthSnapshot | None = None
        self._last_at = 0.0
        self._running: asyncio.Future[HealthSnapshot] | None = None

    async def snapshot(self) -> HealthSnapshot:
        if self._last is not None and time.monotonic() - self._last_at < self.ttl:
            return self._last
        if self._running is None:
            self._running = asyncio.ensure_future(self._measure())
            self._running.add_done_callback(self._measured)
        return await asyncio.shield(self._running)

    def _measured(self, done: asyncio.Future[HealthSnapshot]) -> None:
        self._running = None
        if not done.cancelled() and done.exception() is None:
            self._last, self._last_at = done.result(), time.monotonic()

    async def _measure(self) -> HealthSnapshot:
        kms = self.kms_probe.probe() if self.kms_probe is not None else _none()
        (nodes, sets), kms_result = await asyncio.gather(self._survey(), kms)
        return HealthSnapshot(time.time(), nodes, sets, kms_result)

    async def _survey(self) -> tuple[tuple[NodeStat, ...], tuple[SetState, ...]]:
        ctx = getattr(self.layer, "ctx", None)
        if ctx is None or not hasattr(ctx, "placement"):
            return (), ()
        placement = ctx.placement
        names = list(placement.all_nodes())

        async def stat(name: str) -> NodeStat:
            try:
                reply = await ctx.pool.client(name).unary("Stat", pb.StatRequest(),
                                                          deadline=STAT_DEADLINE)
            except Exception as exc:  # any failure means "offline" here, with its reason
                return NodeStat(name, False, _reason(exc))
            return NodeStat(name, True, "", reply.disk_total, reply.disk_free, reply.objects,
                            reply.bytes, reply.pending_writes, reply.uptime_seconds)

        nodes = tuple(await asyncio.gather(*(stat(n) for n in names)))
        online = {n.name for n in nodes if n.online}
        wq = write_quorum(placement.data_shards, placement.parity_shards)
        rq = read_quorum(placement.data_shards)
        sets = tuple(SetState(i, tuple(members), tuple(n for n in members if n in online),
                              wq, rq)
                     for i, members in enumerate(placement.topology.sets))
        return nodes, sets

    async def close(self) -> None:
        if self.kms_probe is not None:
            await self.kms_probe.close()


async def _none() -> None:
    return None


def _reason(exc: BaseException) -> str:
    short = getattr(exc, "short", None)
    if callable(short):
        return str(short())
    return (str(exc) or type(exc).__name__).splitlines()[0][:160]
