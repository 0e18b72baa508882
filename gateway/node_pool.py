"""The gateway's storage nodes: one client (one gRPC channel) per node, each node's health
memory (common/endpoint_health.py, shared with the KES pool), and the timeouts every call uses.

Every call made through the pool reports its outcome to the node's health: a transport
failure (unreachable, timed out) counts against the node, any answer (even "no such key")
counts for it. Sidelined nodes are skipped by `usable` until their backoff ends and one
request probes them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

from common.endpoint_health import EndpointHealth, EndpointState
from common.topology import Topology
from gateway.storage_client import GrpcNodeClient, NodeCallError, NodeClient, NodeTLS, Timeouts
from proto import storage_pb2 as pb

__all__ = ["NodePool"]

DEFAULT_BACKOFF = 10.0  # seconds a failed node is skipped before one request probes it


class _TrackedClient:
    """A NodeClient that reports each call's outcome to the node's EndpointHealth."""

    def __init__(self, inner: NodeClient, health: EndpointHealth):
        self.name = inner.name
        self._inner = inner
        self._health = health

    def _note(self, error: NodeCallError | None) -> None:
        if error is not None and error.is_transport:
            self._health.failure(error.short())
        else:
            self._health.success()

    async def unary(self, method: str, request: Any, *, deadline: float) -> Any:
        try:
            reply = await self._inner.unary(method, request, deadline=deadline)
        except NodeCallError as exc:
            self._note(exc)
            raise
        self._note(None)
        return reply

    async def stream(self, method: str, request: Any, *, deadline: float,
                     idle_timeout: float) -> AsyncIterator[Any]:
        try:
            async for message in self._inner.stream(method, request, deadline=deadline,
                                                    idle_timeout=idle_timeout):
                yield message
        except NodeCallError as exc:
            self._note(exc)
            raise
        self._note(None)

    async def write_shard(self, messages: AsyncIterator[pb.WriteShardMessage | bytes], *,
                          deadline: float, idle_timeout: float) -> pb.WriteShardReply:
        try:
            reply = await self._inner.write_shard(messages, deadline=deadline,
                                                  idle_timeout=idle_timeout)
        except NodeCallError as exc:
            self._note(exc)
            raise
        self._note(None)
        return reply

    async def close(self) -> None:
        await self._inner.close()


class NodePool:
    """Clients by node name, with health tracking. `usable` skips sidelined nodes."""

    def __init__(self, clients: Mapping[str, NodeClient], *, timeouts: Timeouts | None = None,
                 backoff: float = DEFAULT_BACKOFF):
        self.health = {name: EndpointHealth(name, backoff=backoff) for name in clients}
        self._clients = {name: _TrackedClient(c, self.health[name])
                         for name, c in clients.items()}
        self.timeouts = timeouts or Timeouts()

    @classmethod
    def from_topology(cls, topology: Topology, tls: NodeTLS | None, *,
                      timeouts: Timeouts | None = None,
                      backoff: float = DEFAULT_BACKOFF) -> NodePool:
        clients = {n.name: GrpcNodeClient(n.name, n.address, tls) for n in topology.nodes}
        return cls(clients, timeouts=timeouts, backoff=backoff)

    def client(self, name: str) -> NodeClient:
        return self._clients[name]

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._clients)

    def is_sidelined(self, name: str) -> bool:
        return self.health[name].state != "up"

    def offline(self, names: Sequence[str]) -> list[str]:
        """The nodes of `names` the pool is backing off from now (sidelined or on probation):
        what it already knows, without calling anyone or claiming a probe."""
        return [n for n in names if self.is_sidelined(n)]

    def note_failure(self, name: str, reason: str) -> None:
        """A failure seen outside a call (e.g. a write stream that stopped taking data)."""
        self.health[name].failure(reason)

    def usable(self, names: Sequence[str], need: int) -> list[str]:
        """`names` without the sidelined nodes, unless that leaves fewer than `need`: then all
        of them (a chance of quorum beats certain failure). Claims probes of recovered nodes."""
        ready = [n for n in names if self.health[n].acquire()]
        return ready if len(ready) >= need else list(names)

    def statistics(self) -> list[EndpointState]:
        return [h.snapshot() for h in self.health.values()]

    async def close(self) -> None:
        for client in self._clients.values():
            await client.close()
