"""The chaos tier's shared cluster: 6 storage nodes (EC 4+2), 2 gateways, 3 KES servers, with
healing paced for tests and the gateways' read cache of unsealed data keys turned off, so
that every SSE read asks KES (the KES tests measure KES, not the cache). One cluster serves
every test that only needs the default layout; each test leaves every process running."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from cluster.launcher import Cluster
from tests.chaos.support import HEAL_FAST, restore
from tests.conftest import running_cluster


@pytest.fixture(scope="session")
def chaos_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {**HEAL_FAST, "TESSERA_KMS_DECRYPT_CACHE": "off"}
    with running_cluster(tmp_path_factory.mktemp("chaos"), nodes=6, gateways=2, kes=3,
                         parity=2, gateway_env=env) as cluster:
        yield cluster


@pytest.fixture
def cluster(chaos_cluster: Cluster) -> Iterator[Cluster]:
    """The shared cluster, whole again after the test whatever it broke."""
    restore(chaos_cluster)
    try:
        yield chaos_cluster
    finally:
        restore(chaos_cluster)
