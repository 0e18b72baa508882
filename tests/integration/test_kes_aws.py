"""The AWS keystore (Secrets Manager + KMS) against moto's server mode as a real process on
loopback: a full key round trip, keys wrapped by the configured KMS key, and a keystore outage
that the offline cache rides out."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator

import boto3
import pytest
import yaml

from cluster.certs import ClusterCA
from cluster.launcher import free_port
from kes.client import KESClient, KESConfig
from kes.errors import KESUnavailable, KeyNotFound
from kes.keyfile import decode_key

from .kes_helpers import call, kes_server, tls_context

CREDS = {"aws_access_key_id": "testing", "aws_secret_access_key": "testing",
         "region_name": "us-east-1"}


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("moto_server exited during start-up")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto_server not answering at {url}")


@pytest.fixture(scope="module")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """moto_server on a free loopback port; `stop()` ends it early (the outage test)."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)

    def stop() -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    try:
        url = f"http://127.0.0.1:{port}"
        _wait_http(url, proc)
        yield {"url": url, "stop": stop}
    finally:
        stop()


@pytest.fixture(scope="module")
def aws_kes(moto: dict, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("kes-aws")
    kms_key = boto3.client("kms", endpoint_url=moto["url"], **CREDS).create_key()["KeyMetadata"]
    ca = ClusterCA.open(tmp / "certs")
    server, admin = ca.issue("kes"), ca.issue("admin", server=False)
    from kes.identity import identity_of_pem

    address = f"127.0.0.1:{free_port()}"
    config = tmp / "kes.yaml"
    config.write_text(yaml.safe_dump({
        "address": address,
        "admin": {"identity": identity_of_pem(admin.cert)},
        "tls": {"key": str(server.key), "cert": str(server.cert), "ca": str(ca.cert_path),
                "auth": "on"},
        "cache": {"expiry": {"any": "5m", "unused": "1m", "offline": "10m"}},
        "keystore": {"aws": {"secretsmanager": {
            "endpoint": moto["url"], "region": "us-east-1", "kmskey": kms_key["KeyId"],
            "credentials": {"accesskey": "testing", "secretkey": "testing"}}}},
    }))
    ctx = tls_context(ca.cert_path, admin.cert, admin.key)
    with kes_server(config, address, ctx):
        yield {"address": address, "ctx": ctx, "kms_key": kms_key,
               "client": KESConfig((f"https://{address}",), str(admin.cert), str(admin.key),
                                   capath=str(ca.cert_path), timeout=5.0, call_timeout=10.0)}


def test_keys_live_in_secrets_manager_wrapped_by_kms(moto: dict, aws_kes: dict) -> None:
    async def run() -> None:
        async with KESClient(aws_kes["client"]) as kes:
            await kes.create_key("aws-key")
            assert await kes.list_keys("aws") == ["aws-key"]
            assert (await kes.describe_key("aws-key")).algorithm == "AES256"
            plain, sealed = await kes.generate_key("aws-key", b"ctx")
            assert await kes.decrypt("aws-key", sealed, b"ctx") == plain
            await kes.create_key("aws-gone")
            await kes.delete_key("aws-gone")
            with pytest.raises(KeyNotFound):
                await kes.describe_key("aws-gone")

    asyncio.run(run())
    sm = boto3.client("secretsmanager", endpoint_url=moto["url"], **CREDS)
    secret = sm.describe_secret(SecretId="aws-key")
    assert secret["KmsKeyId"] in (aws_kes["kms_key"]["KeyId"], aws_kes["kms_key"]["Arn"])
    value = sm.get_secret_value(SecretId="aws-key")["SecretString"].encode()
    assert len(decode_key(value).key) == 32  # KES's encoded key, as KES's AWS keystore stores
    assert [s["Name"] for s in sm.list_secrets()["SecretList"]] == ["aws-key"]


def test_keystore_outage_is_ridden_out_by_the_offline_cache(moto: dict, aws_kes: dict) -> None:
    async def run() -> None:
        async with KESClient(aws_kes["client"]) as kes:
            await kes.create_key("aws-outage")
            plain, sealed = await kes.generate_key("aws-outage", b"c")  # now cached
            moto["stop"]()
            for _ in range(10):
                p2, s2 = await kes.generate_key("aws-outage", b"c")
                assert await kes.decrypt("aws-outage", s2, b"c") == p2
            assert await kes.decrypt("aws-outage", sealed, b"c") == plain
            status = await kes.status()
            assert status["keystore_unreachable"] is True
            with pytest.raises(KESUnavailable) as err:  # a 5xx from every endpoint
                await kes.create_key("aws-new")
            assert str(err.value).endswith(": HTTP 502 failed to create key)")

    asyncio.run(run())
    ready = call(aws_kes["address"], "GET", "/v1/ready", aws_kes["ctx"])
    assert (ready.status, ready.message) == (504, "key store is not reachable")
