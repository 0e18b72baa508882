"""Cluster health as the gateway sees it: which nodes answer, and whether every erasure set
still has its write quorum (what /minio/health/ready and /minio/health/cluster report)."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.objects.context import LayerContext
from gateway.objects.quorum import fan_out
from gateway.placement import write_quorum
from proto import storage_pb2 as pb

__all__ = ["ClusterHealth", "SetHealth", "probe_cluster"]

PROBE_TIMEOUT = 2.0  # seconds: a health check answers quickly or says "down"


@dataclass(frozen=True)
class SetHealth:
    index: int
    online: tuple[str, ...]
    offline: tuple[str, ...]
    write_quorum: int

    @property
    def writable(self) -> bool:
        return len(self.online) >= self.write_quorum


@dataclass(frozen=True)
class ClusterHealth:
    """`ok` when every set can take writes; `sets` says which nodes are out."""

    sets: tuple[SetHealth, ...]

    @property
    def ok(self) -> bool:
        return all(s.writable for s in self.sets)


async def probe_cluster(ctx: LayerContext, deadline: float = PROBE_TIMEOUT) -> ClusterHealth:
    """One Stat call per node, all at once, within `deadline` seconds."""
    placement = ctx.placement
    nodes = list(placement.all_nodes())
    request = pb.StatRequest()
    out = await fan_out(nodes, lambda n: ctx.pool.client(n).unary("Stat", request,
                                                                   deadline=deadline),
                        quorum=0, timeout=deadline + 0.5)
    online = {r.node for r in out.successes}
    quorum = write_quorum(placement.data_shards, placement.parity_shards)
    sets = tuple(
        SetHealth(i, tuple(n for n in members if n in online),
                  tuple(n for n in members if n not in online), quorum)
        for i, members in enumerate(placement.topology.sets))
    return ClusterHealth(sets)
