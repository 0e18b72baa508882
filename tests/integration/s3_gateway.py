"""A running gateway for the S3 integration tests, on the backend `TESSERA_S3_BACKEND` names.

- `cluster` (default): a real cluster from the launcher (6 storage nodes, 1 gateway, no KES),
  the gateway on the erasure-coded object layer;
- `memory`: `python -m gateway --memory` (HTTP + HTTPS) in a process of its own; quicker while
  iterating on the S3 front (`TESSERA_S3_BACKEND=memory`).

Tests only see an `S3Endpoint` (URLs, credentials, CA) and talk through boto3, the aws cli, or
raw HTTP signed with botocore, so they run unchanged on either backend. Every process started
here is stopped by its pid when the module's tests end, pass or fail.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from unittest import mock
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials

from cluster.certs import ClusterCA
from cluster.launcher import free_port
from cluster.probes import probe_gateway

__all__ = ["DOMAIN", "RawResponse", "S3Endpoint", "raw_request", "s3", "signed_headers"]

ROOT = Path(__file__).resolve().parents[2]
DOMAIN = "tessera.test"  # virtual-host-style domain the gateway is told about
ACCESS_KEY = "tessera-test-admin"
SECRET_KEY = "tessera-test-secret-0123456789"


@dataclass(frozen=True)
class S3Endpoint:
    url: str  # http://127.0.0.1:port
    https_url: str  # https://127.0.0.1:port
    ca: Path
    access_key: str
    secret_key: str
    region: str = "us-east-1"
    log: Path | None = None

    def client(self, *, https: bool = False, secret: str | None = None, **config: object):
        """A boto3 S3 client; `config` goes to botocore's Config (retries off by default)."""
        config.setdefault("retries", {"max_attempts": 1, "mode": "standard"})
        config.setdefault("s3", {"addressing_style": "path"})
        return boto3.session.Session().client(
            "s3", endpoint_url=self.https_url if https else self.url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=secret if secret is not None else self.secret_key,
            region_name=self.region, verify=str(self.ca) if https else None,
            config=Config(**config))  # type: ignore[arg-type]

    def aws(self, *args: str, https: bool = False, check: bool = True,
            env: Mapping[str, str] | None = None,
            timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """Run the aws cli (`.venv/bin/aws`) against this gateway."""
        full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
        full_env.update({"AWS_ACCESS_KEY_ID": self.access_key,
                         "AWS_SECRET_ACCESS_KEY": self.secret_key,
                         "AWS_DEFAULT_REGION": self.region, "AWS_CA_BUNDLE": str(self.ca),
                         "AWS_CONFIG_FILE": "/dev/null",
                         "AWS_SHARED_CREDENTIALS_FILE": "/dev/null"})
        full_env.update(env or {})
        aws = Path(sys.executable).parent / "aws"
        cmd = [str(aws), "--endpoint-url", self.https_url if https else self.url, *args]
        result = subprocess.run(cmd, env=full_env, capture_output=True, text=True,
                                timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise AssertionError(f"aws {' '.join(args)} failed ({result.returncode}):\n"
                                 f"{result.stderr}")
        return result




@contextlib.contextmanager
def memory_gateway(root: Path) -> Iterator[S3Endpoint]:
    """`python -m gateway --memory` on free loopback ports, stopped by pid on exit."""
    ca = ClusterCA.open(root / "certs")
    pair = ca.issue("gateway")
    http_port, https_port = free_port(), free_port()
    log = root / "gateway.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MINIO_", "AWS_"))}
    env.update({"MINIO_ROOT_USER": ACCESS_KEY, "MINIO_ROOT_PASSWORD": SECRET_KEY,
                "MINIO_DOMAIN": DOMAIN, "PYTHONUNBUFFERED": "1"})
    argv = [sys.executable, "-m", "gateway", "--memory",
            "--listen", f"127.0.0.1:{http_port}", "--tls-listen", f"127.0.0.1:{https_port}",
            "--tls-cert", str(pair.cert), "--tls-key", str(pair.key)]
    with open(log, "wb") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while not probe_gateway(f"127.0.0.1:{http_port}", 1.0).ok:
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"gateway did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.05)
        yield S3Endpoint(f"http://127.0.0.1:{http_port}", f"https://127.0.0.1:{https_port}",
                         ca.cert_path, ACCESS_KEY, SECRET_KEY, log=log)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


@contextlib.contextmanager
def cluster_gateway(root: Path) -> Iterator[S3Endpoint]:
    from tests.conftest import running_cluster

    with running_cluster(root, nodes=6, gateways=1, kes=0,
                         gateway_env={"MINIO_DOMAIN": DOMAIN}) as cluster:
        access, secret = cluster.credentials
        gateway = cluster.by_role("gateway")[0]
        yield S3Endpoint(cluster.gateway_url(0), cluster.gateway_url(0, https=True),
                         cluster.ca_path, access, secret, log=Path(gateway.log))


@pytest.fixture(scope="module")
def s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Endpoint]:
    """One gateway for the test module, on the configured backend."""
    backend = os.environ.get("TESSERA_S3_BACKEND", "cluster")
    root = tmp_path_factory.mktemp("s3")
    factory = {"memory": memory_gateway, "cluster": cluster_gateway}.get(backend)
    if factory is None:
        pytest.fail(f"TESSERA_S3_BACKEND={backend!r}: expected memory or cluster")
    with factory(root) as endpoint:
        yield endpoint


# ---- raw requests, for what boto3 will not send ----


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


class _S3PathSigV4(SigV4Auth):
    """botocore's SigV4 with S3's rule for the path: signed as sent, never re-encoded."""

    def _normalize_url_path(self, path: str) -> str:
        return path


def signed_headers(endpoint: S3Endpoint, method: str, url: str, *,
                   headers: Mapping[str, str] | None = None, payload_hash: str,
                   secret: str | None = None, when: float | None = None) -> dict[str, str]:
    """SigV4 headers from botocore's signer for a request whose payload hash is given
    (a hex SHA-256, UNSIGNED-PAYLOAD or a STREAMING-* mode); `when` fakes the signing time."""
    creds = Credentials(endpoint.access_key, secret or endpoint.secret_key)
    request = AWSRequest(method=method, url=url,
                         headers={**(headers or {}), "X-Amz-Content-SHA256": payload_hash})
    signer = _S3PathSigV4(creds, "s3", endpoint.region)
    if when is None:
        signer.add_auth(request)
    else:
        stamp = datetime.fromtimestamp(when, tz=UTC).replace(tzinfo=None)
        with mock.patch("botocore.auth.get_current_datetime", return_value=stamp):
            signer.add_auth(request)
    out = dict(request.headers.items())
    out.setdefault("Host", urlsplit(url).netloc)
    return out


def raw_request(endpoint: S3Endpoint, method: str, path: str, *, headers: Mapping[str, str],
                body: bytes | list[bytes] = b"", https: bool = False,
                timeout: float = 30) -> RawResponse:
    """Send exactly these bytes (a list is sent piece by piece) and read the whole answer."""
    parts = urlsplit(endpoint.https_url if https else endpoint.url)
    conn: http.client.HTTPConnection
    if https:
        ctx = ssl.create_default_context(cafile=str(endpoint.ca))
        conn = http.client.HTTPSConnection(parts.hostname, parts.port, timeout=timeout,
                                           context=ctx)
    else:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=timeout)
    try:
        conn.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for name, value in headers.items():
            conn.putheader(name, value)
        conn.endheaders()
        for piece in body if isinstance(body, list) else [body]:
            if piece:
                conn.send(piece)
        resp = conn.getresponse()
        data = resp.read()
        return RawResponse(resp.status, {k.lower(): v for k, v in resp.getheaders()}, data)
    finally:
        conn.close()
