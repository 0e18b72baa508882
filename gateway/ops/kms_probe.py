"""Is each KES server of the pool reachable? One authenticated `GET /v1/status` per endpoint,
all at once, each bounded by a short timeout, on connections of its own (probes are not KES
calls of the data path: they neither count in the client's statistics nor sideline endpoints).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from urllib.parse import urlsplit

from gateway.ops.errors import short_error
from kes.client import KESConfig, client_ssl_context
from kes.transport import KeepAlivePool, TransportError

__all__ = ["KMSEndpointProbe", "KMSProbe"]

PROBE_TIMEOUT = 1.5  # seconds one endpoint has to answer


@dataclass(frozen=True)
class KMSEndpointProbe:
    endpoint: str
    reachable: bool
    detail: str  # "ok", or why not (one line, never key material)


class KMSProbe:
    """Probes every endpoint of a KES configuration; `close()` drops its connections."""

    def __init__(self, config: KESConfig, timeout: float = PROBE_TIMEOUT):
        self.endpoints = config.endpoints
        self._config = config
        self.timeout = timeout
        self._pool = KeepAlivePool(client_ssl_context(config), max_idle=2)

    def reload_identity(self) -> None:
        """Re-read the client certificate files (see KESClient.reload_identity)."""
        self._pool.replace_context(client_ssl_context(self._config))

    async def probe(self) -> tuple[KMSEndpointProbe, ...]:
        return tuple(await asyncio.gather(*(self._one(e) for e in self.endpoints)))

    async def _one(self, endpoint: str) -> KMSEndpointProbe:
        parts = urlsplit(endpoint)
        host, port = parts.hostname or "", parts.port or 443
        try:
            async with asyncio.timeout(self.timeout):
                reply = await self._pool.request(host, port, "GET",
                                                 parts.path.rstrip("/") + "/v1/status")
        except TimeoutError:
            return KMSEndpointProbe(endpoint, False, f"no answer within {self.timeout:g}s")
        except (TransportError, OSError) as exc:
            return KMSEndpointProbe(endpoint, False, short_error(exc))
        if reply.status != 200:
            return KMSEndpointProbe(endpoint, False, f"HTTP {reply.status}")
        try:
            doc = json.loads(reply.body or b"{}")
        except ValueError:
            doc = {}
        if isinstance(doc, dict) and doc.get("keystore_unreachable"):
            return KMSEndpointProbe(endpoint, False, "its keystore is unreachable")
        return KMSEndpointProbe(endpoint, True, "ok")

    async def close(self) -> None:
        await self._pool.aclose()

