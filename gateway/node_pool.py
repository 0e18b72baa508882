"""The gateway's storage nodes: one client (one gRPC channel) per node, their shared health
memory, and the timeouts every call uses."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from common.endpoint_health import EndpointHealth, HealthStatistics
from common.topology import Topology
from gateway.storage_client import GrpcNodeClient, NodeClient, NodeTLS, Timeouts

__all__ = ["NodePool"]


class NodePool:
    """Clients by node name. `usable` skips nodes the health memory has sidelined."""

    def __init__(self, clients: Mapping[str, NodeClient], *, health: EndpointHealth | None = None,
                 timeouts: Timeouts | None = None):
        self._clients = dict(clients)
        self.health = health or EndpointHealth()
        self.timeouts = timeouts or Timeouts()

    @classmethod
    def from_topology(cls, topology: Topology, tls: NodeTLS | None, *,
                      timeouts: Timeouts | None = None,
                      health: EndpointHealth | None = None) -> NodePool:
        health = health or EndpointHealth()
        clients = {n.name: GrpcNodeClient(n.name, n.address, tls, health)
                   for n in topology.nodes}
        return cls(clients, health=health, timeouts=timeouts)

    def client(self, name: str) -> NodeClient:
        return self._clients[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._clients)

    def usable(self, names: Sequence[str], need: int) -> list[str]:
        """`names` without the sidelined nodes, unless that leaves fewer than `need`: then all
        of them (a chance of quorum beats certain failure). Claims probes of recovered nodes."""
        ready = [n for n in names if self.health.is_available(n)]
        return ready if len(ready) >= need else list(names)

    def statistics(self) -> HealthStatistics:
        return self.health.statistics()

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
