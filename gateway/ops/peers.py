"""Does another gateway of the cluster still serve? Asked by the maintenance check
(`/minio/health/cluster?maintenance=true`) before an operator takes this gateway down.

Gateways are stateless, so taking one down loses no data; it leaves clients without service
only when no other gateway serves. The gateways come from the topology file's `gateways`
list; each is asked for `/minio/health/live` (all at once, `timeout` each). A gateway serves
when it answers 200 and is not draining (its `x-tessera-draining` header): a drained gateway
gets no traffic from the load balancer. This gateway recognises itself in the list by the
random instance id every gateway puts in its liveness answers, whatever address it is listed
under.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from common.topology import GatewayAddress
from gateway.ops.errors import short_error
from kes.transport import KeepAlivePool, TransportError

__all__ = ["DRAINING_HEADER", "INSTANCE_HEADER", "GatewayPeers", "PeerProbe"]

INSTANCE_HEADER = "x-tessera-gateway-id"
DRAINING_HEADER = "x-tessera-draining"
LIVE_PATH = "/minio/health/live"
PEER_TIMEOUT = 1.0  # seconds a listed gateway has to answer


@dataclass(frozen=True)
class PeerProbe:
    name: str
    serving: bool  # answers and is not draining
    itself: bool  # this very gateway
    detail: str  # "serving", "draining", "this gateway", or why it did not answer


class GatewayPeers:
    """Probes the gateways a topology lists; `close()` drops the connections."""

    def __init__(self, gateways: tuple[GatewayAddress, ...], instance_id: str, *,
                 ca: Path | None = None, timeout: float = PEER_TIMEOUT):
        self.gateways = gateways
        self.instance_id = instance_id
        self.timeout = timeout
        self._plain = KeepAlivePool(None, max_idle=1)
        self._tls: KeepAlivePool | None = None
        if any(g.url.startswith("https://") for g in gateways):
            context = ssl.create_default_context()
            if ca is not None:
                context.load_verify_locations(cafile=str(ca))
            self._tls = KeepAlivePool(context, max_idle=1)

    @property
    def listed(self) -> bool:
        return bool(self.gateways)

    async def probe(self) -> tuple[PeerProbe, ...]:
        return tuple(await asyncio.gather(*(self._one(g) for g in self.gateways)))

    async def _one(self, gateway: GatewayAddress) -> PeerProbe:
        parts = urlsplit(gateway.url)
        pool = self._tls if parts.scheme == "https" else self._plain
        assert pool is not None
        port = parts.port or (443 if parts.scheme == "https" else 80)
        try:
            async with asyncio.timeout(self.timeout):
                reply = await pool.request(parts.hostname or "", port, "GET",
                                           parts.path.rstrip("/") + LIVE_PATH)
        except TimeoutError:
            return PeerProbe(gateway.name, False, False, f"no answer within {self.timeout:g}s")
        except (TransportError, OSError) as exc:
            return PeerProbe(gateway.name, False, False, short_error(exc))
        if reply.headers.get(INSTANCE_HEADER) == self.instance_id:
            return PeerProbe(gateway.name, False, True, "this gateway")
        if reply.status != 200:
            return PeerProbe(gateway.name, False, False, f"HTTP {reply.status}")
        if reply.headers.get(DRAINING_HEADER) == "1":
            return PeerProbe(gateway.name, False, False, "draining")
        return PeerProbe(gateway.name, True, False, "serving")

    async def close(self) -> None:
        await self._plain.aclose()
        if self._tls is not None:
            await self._tls.aclose()

