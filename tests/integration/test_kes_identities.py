"""A server with KES's default `tls.auth: off`: self-signed client certificates pinned by
identity, an unknown identity refused by policy, `skip_auth`; plus the CLI and bad configs."""

from __future__ import annotations

import asyncio
import os
import signal
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from cluster.certs import ClusterCA
from cluster.launcher import free_port
from kes.client import KESClient, KESConfig
from kes.errors import NotAllowed
from kes.identity import identity_of_pem

from .kes_helpers import call, kes_server, tls_context

NOT_ALLOWED = "not authorized: insufficient permissions"


def _kes_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kes", *args], capture_output=True, text=True,
                          timeout=60, env={**os.environ, **(env or {})}, check=False)


def _new_identity(tmp: Path, name: str) -> tuple[Path, Path, str]:
    cert, key = tmp / f"{name}.crt", tmp / f"{name}.key"
    done = _kes_cli("identity", "new", name, "--cert", str(cert), "--key", str(key))
    assert done.returncode == 0, done.stderr
    identity = done.stdout.strip()
    assert _kes_cli("identity", "of", str(cert)).stdout.strip() == identity
    return cert, key, identity


@pytest.fixture(scope="module")
def pinned(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    tmp = tmp_path_factory.mktemp("kes-pinned")
    ca = ClusterCA.open(tmp / "ca")
    server = ca.issue("kes-server")
    admin_cert, admin_key, admin_id = _new_identity(tmp, "admin")
    app_cert, app_key, app_id = _new_identity(tmp, "app")
    stranger_cert, stranger_key, _ = _new_identity(tmp, "stranger")
    made = _kes_cli("identity", "new").stdout.split()  # "API key: kes:v1:... Identity: <hex>"
    api_key, api_id = made[2], made[4]
    assert _kes_cli("identity", "of", api_key).stdout.strip() == api_id
    address = f"127.0.0.1:{free_port()}"
    config = tmp / "kes.yaml"
    config.write_text(yaml.safe_dump({
        "address": address,
        "admin": {"identity": "${TEST_KES_ADMIN}"},
        "tls": {"key": str(server.key), "cert": str(server.cert)},  # auth: off (default)
        "policy": {"app": {"allow": ["/v1/key/generate/app-*", "/v1/key/decrypt/app-*",
                                     "/v1/key/create/app-*"],
                           "deny": ["/v1/key/generate/app-secret"],
                           "identities": [app_id, api_id]}},
        "api": {"/v1/ready": {"skip_auth": True}},
        "keystore": {"fs": {"path": str(tmp / "keys")}},
        "keys": [{"name": "app-default"}],
    }))
    os.environ["TEST_KES_ADMIN"] = admin_id
    try:
        admin = tls_context(ca.cert_path, admin_cert, admin_key)
        with kes_server(config, address, admin) as proc:
            yield {"address": address, "ca": ca.cert_path, "admin": admin, "proc": proc,
                   "config": config,
                   "app": tls_context(ca.cert_path, app_cert, app_key),
                   "app_files": (app_cert, app_key), "admin_files": (admin_cert, admin_key),
                   "api_key": api_key,
                   "stranger": tls_context(ca.cert_path, stranger_cert, stranger_key)}
    finally:
        os.environ.pop("TEST_KES_ADMIN", None)


def test_self_signed_identities_are_pinned(pinned: dict) -> None:
    addr = pinned["address"]
    assert call(addr, "POST", "/v1/key/generate/app-default", pinned["app"], {}).status == 200
    assert call(addr, "GET", "/v1/key/list/*", pinned["admin"]).json["names"] == ["app-default"]
    for ctx, path in ((pinned["app"], "/v1/key/generate/app-secret"),
                      (pinned["app"], "/v1/key/list/*"),
                      (pinned["stranger"], "/v1/key/generate/app-default"),
                      (pinned["stranger"], "/v1/status")):
        reply = call(addr, "POST" if "generate" in path else "GET", path, ctx, {})
        assert (reply.status, reply.message) == (403, NOT_ALLOWED), path


def test_skip_auth_route_and_missing_certificate(pinned: dict) -> None:
    anonymous = tls_context(pinned["ca"], None, None)
    assert call(pinned["address"], "GET", "/v1/ready", anonymous).status == 200
    reply = call(pinned["address"], "GET", "/v1/status", anonymous)
    assert (reply.status, reply.message) == (400, "tls: client certificate is required")


def test_async_client_with_a_self_signed_identity(pinned: dict) -> None:
    cert, key = pinned["app_files"]

    async def run() -> None:
        config = KESConfig((f"https://{pinned['address']}",), str(cert), str(key),
                           capath=str(pinned["ca"]))
        async with KESClient(config) as kes:
            await kes.ensure_default_key("app-fresh")  # 404 -> create, as MinIO does
            plain, sealed = await kes.generate_key("app-fresh", b'{"b":"b/o"}')
            assert await kes.decrypt("app-fresh", sealed, b'{"b":"b/o"}') == plain
            with pytest.raises(NotAllowed):
                await kes.list_keys()
            await kes.ensure_default_key("app-secret")  # 403 is tolerated, like MinIO

    asyncio.run(run())


def test_api_key_client_presents_a_self_signed_certificate(pinned: dict) -> None:
    env = {"MINIO_KMS_KES_ENDPOINT": f"https://{pinned['address']}",
           "MINIO_KMS_KES_API_KEY": pinned["api_key"], "MINIO_KMS_KES_CAPATH": str(pinned["ca"])}

    async def run() -> None:
        async with KESClient(KESConfig.from_env(env)) as kes:
            plain, sealed = await kes.generate_key("app-default", b"ctx")
            assert await kes.decrypt("app-default", sealed, b"ctx") == plain

    asyncio.run(run())
    denied = _kes_cli("key", "list", env=env)  # the CLI takes the API key from the env too
    assert denied.returncode == 1 and denied.stderr.strip() == f"kes: 403 {NOT_ALLOWED}"


def test_cli_key_commands_use_the_minio_environment(pinned: dict) -> None:
    cert, key = pinned["admin_files"]
    env = {"MINIO_KMS_KES_ENDPOINT": f"https://{pinned['address']}",
           "MINIO_KMS_KES_CERT_FILE": str(cert), "MINIO_KMS_KES_KEY_FILE": str(key),
           "MINIO_KMS_KES_CAPATH": str(pinned["ca"])}
    assert _kes_cli("key", "create", "cli-key", env=env).returncode == 0
    again = _kes_cli("key", "create", "cli-key", env=env)
    assert again.returncode == 1 and again.stderr.strip() == "kes: 400 key already exists"
    assert "cli-key" in _kes_cli("key", "list", "cli", env=env).stdout.split()
    assert '"algorithm": "AES256"' in _kes_cli("key", "describe", "cli-key", env=env).stdout
    assert _kes_cli("key", "delete", "cli-key", env=env).returncode == 0
    status = _kes_cli("status", env=env)
    assert status.returncode == 0 and " ok " in status.stdout


def test_sighup_reloads_policies_and_keeps_serving(pinned: dict) -> None:
    addr, stranger = pinned["address"], pinned["stranger"]
    assert call(addr, "GET", "/v1/key/list/*", stranger).status == 403
    config = yaml.safe_load(pinned["config"].read_text())
    stranger_id = identity_of_pem(pinned["config"].parent / "stranger.crt")
    config["policy"]["lister"] = {"allow": ["/v1/key/list/*"], "identities": [stranger_id]}
    pinned["config"].write_text(yaml.safe_dump(config))
    pinned["proc"].send_signal(signal.SIGHUP)
    deadline = time.monotonic() + 5
    while call(addr, "GET", "/v1/key/list/*", stranger).status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    pinned["config"].write_text("admin: [not, a, mapping")  # a broken edit is refused...
    pinned["proc"].send_signal(signal.SIGHUP)
    time.sleep(0.5)
    assert call(addr, "GET", "/v1/key/list/*", stranger).status == 200  # ...the old one stays
    assert pinned["proc"].poll() is None


@pytest.mark.parametrize(("config", "line"), [
    ({"admin": {"identity": "disabled"}, "tls": {"cert": "x"}},
     "kes: config error: tls.key: required but missing"),
    ({"admin": {"identity": "disabled"}, "tls": {"key": "k", "cert": "c"},
      "cache": {"expiry": {"any": "soon"}}},
     "kes: config error: cache.expiry.any: invalid duration 'soon' (use e.g. 30s, 5m, 1h)"),
    ({"admin": {"identity": "disabled"}, "tls": {"key": "/nonexistent.key",
                                                 "cert": "/nonexistent.crt"}},
     "kes: config error: tls.cert: cannot load /nonexistent.crt: "
     "[Errno 2] No such file or directory: '/nonexistent.crt'"),
])
def test_bad_config_stops_start_up_with_one_line(tmp_path: Path, config: dict, line: str) -> None:
    path = tmp_path / "kes.yaml"
    path.write_text(yaml.safe_dump(config))
    done = _kes_cli("--config", str(path))
    assert done.returncode == 2
    assert done.stderr.strip() == line


def test_server_certificate_needs_a_san(tmp_path: Path) -> None:
    ca = ClusterCA.open(tmp_path / "ca")
    pair = ca.issue("no-san", hosts=())
    path = tmp_path / "kes.yaml"
    path.write_text(yaml.safe_dump({"admin": {"identity": "disabled"},
                                    "tls": {"key": str(pair.key), "cert": str(pair.cert)}}))
    done = _kes_cli("--config", str(path))
    assert done.stderr.strip() == (
        "kes: config error: tls.cert: the server certificate has no DNS or IP SAN")


def test_tls_auth_on_rejects_self_signed(tmp_path: Path) -> None:
    ca = ClusterCA.open(tmp_path / "ca")
    server = ca.issue("kes-server")
    cert, key, identity = _new_identity(tmp_path, "self")
    address = f"127.0.0.1:{free_port()}"
    config = tmp_path / "kes.yaml"
    config.write_text(yaml.safe_dump({
        "address": address, "admin": {"identity": identity},
        "tls": {"key": str(server.key), "cert": str(server.cert), "ca": str(ca.cert_path),
                "auth": "on"}}))
    member_cert, member_key = tmp_path / "member.crt", tmp_path / "member.key"
    made = _kes_cli("identity", "new", "member", "--cert", str(member_cert), "--key",
                    str(member_key), "--ca-cert", str(ca.cert_path), "--ca-key",
                    str(ca.directory / "ca.key"))
    assert made.returncode == 0, made.stderr
    with kes_server(config, address, tls_context(ca.cert_path, member_cert, member_key)):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            call(address, "GET", "/v1/status", tls_context(ca.cert_path, cert, key))
        # a CA-issued certificate gets through TLS, then its unknown identity meets the policy
        reply = call(address, "GET", "/v1/status", tls_context(ca.cert_path, member_cert,
                                                               member_key))
        assert (reply.status, reply.message) == (403, NOT_ALLOWED)
