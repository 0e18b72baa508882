"""Shared fixtures: real clusters of real processes, started through the same launcher users run."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from cluster.launcher import Cluster, ClusterSpec


@contextlib.contextmanager
def running_cluster(root: Path, **spec: object) -> Iterator[Cluster]:
    """Start a cluster on free loopback ports under `root`; stop every pid it started on exit,
    whether the test passed, failed or the start-up itself failed."""
    spec.setdefault("ports", "auto")
    cluster = Cluster(root)
    try:
        cluster.up(ClusterSpec(**spec), log=lambda _line: None)  # type: ignore[arg-type]
        yield cluster
    finally:
        cluster.down()


@pytest.fixture
def cluster_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Cluster]]:
    """`cluster_factory(nodes=6, gateways=0, kes=0, parity=2, ...)` -> a running Cluster."""
    stack = contextlib.ExitStack()

    def make(**spec: object) -> Cluster:
        return stack.enter_context(running_cluster(tmp_path_factory.mktemp("cluster"), **spec))

    with stack:
        yield make
