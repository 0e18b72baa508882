"""SSE-S3 writes while a KES server dies: every PUT asks KES for a data key (one generate per
object), so killing one of the two servers mid-run must cost zero failed requests, and every
object must read back (through KES decrypts, from a restarted gateway) with one server down."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.exceptions import BotoCoreError, ClientError

from cluster.launcher import Cluster
from tests.conftest import running_cluster
from tests.integration.sse_helpers import endpoint

pytestmark = pytest.mark.chaos

PUTS = 200
KILL_AFTER = 60


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("sse-chaos"), nodes=6, gateways=1,
                         kes=2) as c:
        yield c


def test_one_kes_server_killed_during_sse_puts_fails_nothing(cluster):
    client = endpoint(cluster).client(max_pool_connections=8)
    client.create_bucket(Bucket="chaos")
    bodies = {f"obj-{i:03d}": os.urandom(2000 + i * 37) for i in range(PUTS)}
    done = 0
    lock = threading.Lock()
    killed = threading.Event()
    failures: list[str] = []

    def put(key: str) -> None:
        nonlocal done
        try:
            reply = client.put_object(Bucket="chaos", Key=key, Body=bodies[key],
                                      ServerSideEncryption="AES256")
            assert reply["ServerSideEncryption"] == "AES256"
        except (ClientError, BotoCoreError) as exc:
            failures.append(f"{key}: {exc}")
        with lock:
            done += 1
            if done == KILL_AFTER and not killed.is_set():
                killed.set()
                cluster.kill("kes-1")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(put, bodies))
    assert killed.is_set() and cluster.state_of("kes-1") == "down"
    assert failures == []
    cluster.restart("gateway-1")  # no cached data keys: every read below asks KES
    client = endpoint(cluster).client()
    for key, data in bodies.items():
        got = client.get_object(Bucket="chaos", Key=key)
        assert hashlib.md5(got["Body"].read()).digest() == hashlib.md5(data).digest()
        assert got["ETag"] == f'"{hashlib.md5(data).hexdigest()}"'
