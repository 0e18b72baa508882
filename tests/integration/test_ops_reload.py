"""SIGHUP on a real cluster (3 nodes, 1 gateway, 1 KES): `python -m cluster reload gateway-1`
makes the gateway present a new KES client certificate (proved by a KES that allows only the
new identity) and serve a new HTTPS certificate, without dropping a kept-alive connection;
a corrupt replacement file keeps the old identity and is named in one log line."""

from __future__ import annotations

import hashlib
import http.client
import shutil
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError
from cryptography import x509

from cluster.certs import ClusterCA
from cluster.launcher import Cluster
from kes.identity import identity_of_pem
from tests.conftest import running_cluster
from tests.integration.sse_helpers import endpoint

ROOT = Path(__file__).resolve().parents[2]
SSE = {"ServerSideEncryption": "AES256"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # every SSE read asks KES (no decrypt cache), so each one shows which identity is used
    with running_cluster(tmp_path_factory.mktemp("reload"), nodes=3, gateways=1, kes=1,
                         parity=1, gateway_env={"TESSERA_KMS_DECRYPT_CACHE": "off"}) as c:
        yield c


def _s3(cluster: Cluster, *, https: bool = False):
    return endpoint(cluster).client(https=https, signature_version="s3v4")


def _reload(cluster: Cluster) -> str:
    done = subprocess.run([sys.executable, "-m", "cluster", "--root", str(cluster.root),
                           "reload", "gateway-1"], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout


def _allow_only(cluster: Cluster, identity: str) -> None:
    """KES-1 restarted with a policy that names only `identity` for the gateways."""
    config_path = cluster.root / "kes-1" / "kes.yaml"
    config = yaml.safe_load(config_path.read_text())
    config["policy"]["gateway"]["identities"] = [identity]
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    cluster.restart("kes-1")


def _sse_round_trip(s3, key: str) -> None:
    data = hashlib.sha256(key.encode()).digest() * 64
    put = s3.put_object(Bucket="reload", Key=key, Body=data, **SSE)
    assert put["ServerSideEncryption"] == "AES256"
    got = s3.get_object(Bucket="reload", Key=key)
    assert got["Body"].read() == data and got["ServerSideEncryption"] == "AES256"


def test_sighup_presents_the_new_kes_client_certificate(cluster: Cluster) -> None:
    s3 = _s3(cluster)
    s3.create_bucket(Bucket="reload")
    _sse_round_trip(s3, "before")
    cert, key = Path(cluster.meta["kes_client_cert"]), Path(cluster.meta["kes_client_key"])
    rotated = ClusterCA.open(cluster.root / "certs").issue("kes-client-rotated", server=False)
    new_identity = identity_of_pem(rotated.cert)
    assert new_identity != identity_of_pem(cert)
    _allow_only(cluster, new_identity)
    with pytest.raises(ClientError) as refused:  # the gateway still presents the old one
        s3.put_object(Bucket="reload", Key="refused", Body=b"x", **SSE)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"

    shutil.copyfile(rotated.key, key)
    shutil.copyfile(rotated.cert, cert)
    out = _reload(cluster)
    assert f"KES client certificate {cert} (identity {new_identity[:16]}" in out, out
    _sse_round_trip(s3, "after")
    assert s3.get_object(Bucket="reload", Key="before")["Body"].read() == \
        hashlib.sha256(b"before").digest() * 64

    cert.write_text("-----BEGIN CERTIFICATE-----\nnot a certificate\n")
    out = _reload(cluster)
    assert "KES client certificate not reloaded, still using the previous one" in out, out
    cluster.restart("kes-1")  # every connection is new: each handshake shows the identity
    _sse_round_trip(s3, "after-corrupt-file")
    log = Path(cluster.record("gateway-1").log).read_text()
    assert cluster.credentials[1] not in log and "PRIVATE KEY" not in log


def _served_certificate(address: str, ca: Path) -> x509.Certificate:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), timeout=10,
                                       context=ssl.create_default_context(cafile=str(ca)))
    try:
        conn.request("GET", "/minio/health/live")
        assert conn.getresponse().status == 200
        der = conn.sock.getpeercert(binary_form=True)
    finally:
        conn.close()
    return x509.load_der_x509_certificate(der)


def test_sighup_serves_the_new_https_certificate(cluster: Cluster) -> None:
    record = cluster.record("gateway-1")
    https, ca = record.extra["https"], cluster.ca_path
    cert, key = Path(record.cert), Path(record.key)
    before = _served_certificate(https, ca)
    host, port = https.rsplit(":", 1)
    kept = http.client.HTTPSConnection(host, int(port), timeout=10,
                                       context=ssl.create_default_context(cafile=str(ca)))
    try:
        kept.request("GET", "/minio/health/live")
        kept.getresponse().read()
        rotated = ClusterCA.open(cluster.root / "certs").issue("gateway-1-rotated")
        shutil.copyfile(rotated.key, key)
        shutil.copyfile(rotated.cert, cert)
        out = _reload(cluster)
        assert f"HTTPS certificate {cert} (CN gateway-1-rotated" in out, out
        kept.request("GET", "/minio/health/live")  # the connection open before still serves
        assert kept.getresponse().status == 200
    finally:
        kept.close()
    after = _served_certificate(https, ca)
    assert after.serial_number != before.serial_number
    assert after.serial_number == x509.load_pem_x509_certificate(
        rotated.cert.read_bytes()).serial_number
    _sse_round_trip(_s3(cluster, https=True), "over-the-new-certificate")

    key.write_text("-----BEGIN PRIVATE KEY-----\ngarbage\n-----END PRIVATE KEY-----\n")
    out = _reload(cluster)
    assert "not reloaded, still serving the previous one" in out, out
    assert _served_certificate(https, ca).serial_number == after.serial_number
    _sse_round_trip(_s3(cluster, https=True), "after-a-bad-key")
