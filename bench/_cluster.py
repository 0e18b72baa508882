"""The cluster most benchmark sections measure: 6 nodes (EC 4+2, mTLS) and one gateway, on
free loopback ports under a temporary directory, stopped when the measurement ends."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

__all__ = ["on_one_gateway_cluster"]


def on_one_gateway_cluster(measure: Callable[[Any], Awaitable[list[dict]]]) -> list[dict]:
    """The rows `measure(cluster)` returns, run against a fresh cluster."""
    from cluster.launcher import Cluster, ClusterSpec

    with tempfile.TemporaryDirectory(prefix="tessera-bench-") as tmp:
        cluster = Cluster(Path(tmp))
        try:
            cluster.up(ClusterSpec(nodes=6, gateways=1, kes=0, parity=2, ports="auto"),
                       log=lambda _line: None)
            return asyncio.run(measure(cluster))
        finally:
            cluster.down()
