"""mTLS on a real node: only clients with a certificate from the cluster CA get in."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cluster.certs import ClusterCA
from cluster.launcher import Cluster
from proto import storage_pb2 as pb
from tests.nodeclient import NodeClient, one_node, reason

REFUSED = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNAUTHENTICATED)


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, NodeClient]]:
    with one_node(tmp_path_factory.mktemp("node")) as node:
        yield node


def _assert_refused(client: NodeClient, admin: NodeClient, bucket: str) -> None:
    with client, pytest.raises(grpc.RpcError) as err:
        client.make_bucket(bucket)
    assert err.value.code() in REFUSED, err.value
    with pytest.raises(grpc.RpcError) as err:  # and nothing happened
        admin.stub.HeadBucket(pb.HeadBucketRequest(bucket=bucket), timeout=10)
    assert reason(err.value) == "NoSuchBucket"


def test_cluster_client_certificate_is_accepted(node: tuple[Cluster, NodeClient]) -> None:
    _, admin = node
    admin.make_bucket("admitted")
    assert admin.stat().node_id == "node-1"


def test_call_without_client_certificate_is_refused(node: tuple[Cluster, NodeClient]) -> None:
    cluster, admin = node
    client = NodeClient.connect(cluster.record("node-1").address, ca=cluster.ca_path)
    _assert_refused(client, admin, "no-cert")


def test_certificate_from_another_ca_is_refused(node: tuple[Cluster, NodeClient],
                                                 tmp_path: Path) -> None:
    cluster, admin = node
    intruder = ClusterCA.open(tmp_path / "other-ca").issue("intruder", server=False)
    client = NodeClient.connect(cluster.record("node-1").address, ca=cluster.ca_path,
                                cert=intruder.cert, key=intruder.key)
    _assert_refused(client, admin, "other-ca")


def test_plain_tcp_is_refused(node: tuple[Cluster, NodeClient]) -> None:
    cluster, admin = node
    client = NodeClient.connect(cluster.record("node-1").address)
    _assert_refused(client, admin, "plain")
