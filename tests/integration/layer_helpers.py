"""Helpers for tests that drive an erasure object layer over a real cluster's nodes."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

from cluster.launcher import Cluster
from gateway.objects import errors as oe
from gateway.objects.erasure_layer import ErasureObjectLayer


async def get(layer: ErasureObjectLayer, bucket: str, key: str, start: int = 0,
              length: int | None = None) -> bytes:
    """The object's bytes (or a range of them), read through the layer."""
    reader = await layer.open_object(bucket, key)
    try:
        return b"".join([c async for c in reader.stream(start, length)])
    finally:
        await reader.close()


async def ensure_bucket(layer: ErasureObjectLayer, bucket: str) -> None:
    with contextlib.suppress(oe.BucketAlreadyExists):
        await layer.make_bucket(bucket)


@contextlib.contextmanager
def stopped(cluster: Cluster, *names: str, sig: int = signal.SIGKILL) -> Iterator[None]:
    """Nodes killed (or paused) for the block; running again afterwards, whatever happens."""
    for name in names:
        cluster.kill(name, sig)
    try:
        yield
    finally:
        for name in names:
            if sig == signal.SIGSTOP:
                cluster.resume(name)
            elif cluster.state_of(name) == "down":
                cluster.start(name)
