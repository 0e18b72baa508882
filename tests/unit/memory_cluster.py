"""An ErasureObjectLayer over in-process MemoryNodes, for unit tests of the object layer."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from concurrent.futures import ThreadPoolExecutor

from common.topology import Topology
from gateway.heal_queue import MemoryHealQueue
from gateway.memory_node import MemoryNode
from gateway.node_pool import NodePool
from gateway.objects.context import LayerContext
from gateway.objects.erasure_layer import ErasureObjectLayer
from gateway.placement import Placement
from gateway.storage_client import Timeouts

FAST = Timeouts(unary=0.3, idle=0.3, stream=30.0)


def memory_layer(nodes: int = 6, parity: int | None = 2, set_size: int | None = None,
                 timeouts: Timeouts = FAST, **ctx_options: object,
                 ) -> tuple[ErasureObjectLayer, dict[str, MemoryNode], MemoryHealQueue]:
    topology = Topology.from_addresses([f"127.0.0.1:{10000 + i}" for i in range(nodes)],
                                       set_size)
    members = {n.name: MemoryNode(n.name) for n in topology.nodes}
    pool = NodePool(members, timeouts=timeouts, backoff=60.0)
    heal = MemoryHealQueue()
    ctx = LayerContext(pool=pool, placement=Placement(topology, parity), heal=heal,
                       executor=ThreadPoolExecutor(2), **ctx_options)  # type: ignore[arg-type]
    return ErasureObjectLayer(ctx), members, heal


async def body(data: bytes, chunk: int = 100_003) -> AsyncIterator[bytes]:
    for i in range(0, len(data), chunk):
        yield data[i : i + chunk]


async def chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for p in parts:
        yield p


async def read_all(layer: ErasureObjectLayer, bucket: str, key: str, start: int = 0,
                   length: int | None = None) -> bytes:
    reader = await layer.open_object(bucket, key)
    try:
        return b"".join([c async for c in reader.stream(start, length)])
    finally:
        await reader.close()
