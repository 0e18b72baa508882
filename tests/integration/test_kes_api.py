"""The KES API of real `python -m kes` processes (started by the cluster launcher) over mTLS:
every endpoint with its success and error bodies, authorisation, and two servers sharing one
directory keystore."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cluster.certs import ClusterCA
from cluster.launcher import Cluster
from kes.keyfile import decode_key
from tests.conftest import running_cluster

from .kes_helpers import b64, call, tls_context, unb64

NOT_ALLOWED = "not authorized: insufficient permissions"
NOT_FOUND = "key does not exist"
DECRYPT = "decryption failed: ciphertext is not authentic"


@pytest.fixture(scope="module")
def kes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("kes-api"), nodes=0, gateways=0,
                         kes=2) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def admin(kes: Cluster) -> ssl.SSLContext:
    cert, key = kes.admin_cert()
    return tls_context(kes.ca_path, cert, key)


@pytest.fixture(scope="module")
def gateway(kes: Cluster) -> ssl.SSLContext:
    return tls_context(kes.ca_path, Path(kes.meta["kes_client_cert"]),
                       Path(kes.meta["kes_client_key"]))


@pytest.fixture(scope="module")
def addr(kes: Cluster) -> str:
    return kes.by_role("kes")[0].address


@pytest.fixture(scope="module")
def addr2(kes: Cluster) -> str:
    return kes.by_role("kes")[1].address


def test_version_and_system_endpoints(addr: str, admin: ssl.SSLContext) -> None:
    reply = call(addr, "GET", "/version", admin)
    assert reply.status == 200 and reply.headers["content-type"] == "application/json"
    assert reply.body.endswith(b"\n") and set(reply.json) == {"version", "commit"}
    assert call(addr, "GET", "/v1/ready", admin).status == 200
    status = call(addr, "GET", "/v1/status", admin).json
    assert {"version", "os", "arch", "uptime", "num_cpu", "num_cpu_used", "mem_heap_used",
            "mem_stack_used"} <= set(status)
    assert "keystore_unreachable" not in status and isinstance(status["uptime"], int)
    routes = call(addr, "GET", "/v1/api", admin).json
    assert {"method": "PUT", "path": "/v1/key/create/", "max_body": 0, "timeout": 15} in routes
    assert {"method": "GET", "path": "/version", "max_body": 0, "timeout": 10} in routes
    metrics = call(addr, "GET", "/v1/metrics", admin)
    assert metrics.status == 200 and metrics.headers["content-type"].startswith("text/plain")
    text = metrics.body.decode()
    for name in ("kes_http_request_success{code=\"200\"}", "kes_http_request_active",
                 "kes_http_response_time_bucket{le=\"0.01\"}", "kes_system_up_time",
                 "kes_system_num_cpu", "kes_log_audit_events"):
        assert name in text


def test_unknown_path_wrong_method_and_plain_http(addr: str, admin: ssl.SSLContext) -> None:
    reply = call(addr, "GET", "/v1/nothing", admin)
    assert (reply.status, reply.body) == (404, b"404 page not found\n")
    assert reply.headers["content-type"] == "text/plain; charset=utf-8"
    reply = call(addr, "GET", "/v1/key/create/x", admin)
    assert reply.status == 405 and reply.headers["accept"] == "PUT"
    assert reply.message == "received method 'GET' expected 'PUT'"
    host, port = addr.rsplit(":", 1)
    with socket.create_connection((host, int(port)), timeout=5) as s:
        s.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
        assert s.recv(200).startswith(b"HTTP/1.0 400 Bad Request")


def test_create_describe_list_delete(addr: str, admin: ssl.SSLContext) -> None:
    reply = call(addr, "PUT", "/v1/key/create/api-key-1", admin)
    assert (reply.status, reply.body, reply.headers["content-length"]) == (200, b"", "0")
    assert call(addr, "POST", "/v1/key/create/api-key-2", admin).status == 200  # POST too
    again = call(addr, "POST", "/v1/key/create/api-key-1", admin)
    assert (again.status, again.message) == (400, "key already exists")
    bad = call(addr, "POST", "/v1/key/create/bad.name", admin)
    assert (bad.status, bad.message) == (
        400, "key name 'bad.name' is empty, too long or contains invalid characters")
    info = call(addr, "GET", "/v1/key/describe/api-key-1", admin).json
    assert info["name"] == "api-key-1" and info["algorithm"] == "AES256"
    assert info["created_at"].endswith("Z") and len(info["created_by"]) == 64
    missing = call(addr, "GET", "/v1/key/describe/nope", admin)
    assert (missing.status, missing.message) == (404, NOT_FOUND)
    for path in ("/v1/key/list", "/v1/key/list/", "/v1/key/list/*"):
        names = call(addr, "GET", path, admin).json["names"]
        assert {"api-key-1", "api-key-2", "minio-default-key"} <= set(names)
        assert names == sorted(names)
    assert call(addr, "GET", "/v1/key/list/api-", admin).json == {
        "names": ["api-key-1", "api-key-2"]}
    assert call(addr, "GET", "/v1/key/list/api-*", admin).json == {"names": []}  # KES quirk
    bad = call(addr, "GET", "/v1/key/list/a*b", admin)
    assert (bad.status, bad.message) == (
        400, "listing pattern 'a*b' is empty, too long or is invalid")
    assert call(addr, "DELETE", "/v1/key/delete/api-key-2", admin).status == 200
    gone = call(addr, "DELETE", "/v1/key/delete/api-key-2", admin)
    assert (gone.status, gone.message) == (404, NOT_FOUND)


def test_generate_decrypt_encrypt_hmac(addr: str, admin: ssl.SSLContext) -> None:
    call(addr, "POST", "/v1/key/create/crypto-key", admin)
    context = b'{"bucket":"bucket/object"}'
    for body in (None, {}, {"context": None}, {"context": b64(context), "version": "v1"}):
        reply = call(addr, "POST", "/v1/key/generate/crypto-key", admin, body)
        assert reply.status == 200, reply.body
        doc = reply.json
        assert len(unb64(doc["plaintext"])) == 32 and len(unb64(doc["ciphertext"])) == 76
    plain = call(addr, "POST", "/v1/key/decrypt/crypto-key", admin,
                 {"ciphertext": doc["ciphertext"], "context": b64(context)}).json["plaintext"]
    assert plain == doc["plaintext"]
    wrong = call(addr, "POST", "/v1/key/decrypt/crypto-key", admin,
                 {"ciphertext": doc["ciphertext"], "context": b64(b'{"bucket":"other"}')})
    assert (wrong.status, wrong.message) == (400, DECRYPT)
    junk = call(addr, "PUT", "/v1/key/decrypt/crypto-key", admin, {"ciphertext": b64(b"x" * 20)})
    assert (junk.status, junk.message) == (400, DECRYPT)
    sealed = call(addr, "PUT", "/v1/key/encrypt/crypto-key", admin,
                  {"plaintext": b64(b"hello"), "context": b64(b"c")}).json["ciphertext"]
    assert call(addr, "PUT", "/v1/key/decrypt/crypto-key", admin,
                {"ciphertext": sealed, "context": b64(b"c")}).json == {"plaintext": b64(b"hello")}
    mac1 = call(addr, "PUT", "/v1/key/hmac/crypto-key", admin, {"message": b64(b"m")}).json
    mac2 = call(addr, "PUT", "/v1/key/hmac/crypto-key", admin, {"message": b64(b"m")}).json
    assert mac1 == mac2 and len(unb64(mac1["hmac"])) == 32
    for body in (b"{not json", b'{"context": 5}', b'{"context": "***"}', b"[1]"):
        bad = call(addr, "POST", "/v1/key/generate/crypto-key", admin, body)
        assert (bad.status, bad.message) == (400, "invalid request body")
    big = call(addr, "POST", "/v1/key/encrypt/crypto-key", admin, b"x" * 1_000_001)
    assert (big.status, big.message) == (400, "invalid request body")
    missing = call(addr, "POST", "/v1/key/generate/no-such-key", admin, {})
    assert (missing.status, missing.message) == (404, NOT_FOUND)


def test_import_produces_kes_format_ciphertexts(addr: str, admin: ssl.SSLContext) -> None:
    master = bytes(range(32))
    assert call(addr, "PUT", "/v1/key/import/imported", admin,
                {"key": b64(master), "cipher": "AES256"}).status == 200
    ct = unb64(call(addr, "POST", "/v1/key/encrypt/imported", admin,
                    {"plaintext": b64(b"data"), "context": b64(b"ctx")}).json["ciphertext"])
    sealed, iv, nonce = ct[:-28], ct[-28:-12], ct[-12:]
    message_key = hmac.new(master, iv, hashlib.sha256).digest()
    assert AESGCM(message_key).decrypt(nonce, sealed, b"ctx") == b"data"
    # a ciphertext made outside KES the same way decrypts inside
    iv2, nonce2 = b"\x07" * 16, b"\x09" * 12
    outside = AESGCM(hmac.new(master, iv2, hashlib.sha256).digest()).encrypt(
        nonce2, b"outside", b"") + iv2 + nonce2
    assert unb64(call(addr, "POST", "/v1/key/decrypt/imported", admin,
                      {"ciphertext": b64(outside)}).json["plaintext"]) == b"outside"
    cases = [({"key": b64(master), "cipher": "DES"}, 406, "algorithm 'DES' is not supported"),
             ({"key": b64(b"short"), "cipher": "AES256"}, 406, "invalid key size for 'AES256'"),
             ({"bytes": b64(master), "algorithm": "AES256-GCM_SHA256"}, 406,
              "algorithm '' is not supported"),
             (b"nope", 400, "invalid import key request body")]
    for body, status, message in cases:
        reply = call(addr, "PUT", "/v1/key/import/imported-2", admin, body)
        assert (reply.status, reply.message) == (status, message)


def test_bulk_decrypt_v1(addr: str, admin: ssl.SSLContext) -> None:
    call(addr, "POST", "/v1/key/create/bulk-key", admin)
    items, plains = [], []
    for i in range(3):
        doc = call(addr, "POST", "/v1/key/generate/bulk-key", admin,
                   {"context": b64(f"c{i}".encode())}).json
        items.append({"ciphertext": doc["ciphertext"], "context": b64(f"c{i}".encode())})
        plains.append({"plaintext": doc["plaintext"]})
    assert call(addr, "POST", "/v1/key/bulk/decrypt/bulk-key", admin, items).json == plains
    items[1]["context"] = b64(b"wrong")
    bad = call(addr, "POST", "/v1/key/bulk/decrypt/bulk-key", admin, items)
    assert (bad.status, bad.message) == (400, DECRYPT)
    many = call(addr, "POST", "/v1/key/bulk/decrypt/bulk-key", admin, [{}] * 1001)
    assert (many.status, many.message) == (400, "too many ciphertexts")


def test_policy_and_identity_reads(kes: Cluster, addr: str, admin: ssl.SSLContext,
                                   gateway: ssl.SSLContext) -> None:
    from kes.identity import identity_of_pem

    admin_id = identity_of_pem(kes.admin_cert()[0])
    gateway_id = identity_of_pem(kes.meta["kes_client_cert"])
    assert call(addr, "GET", "/v1/policy/list/*", admin).json == {"names": ["gateway"],
                                                                  "continue_at": ""}
    policy = call(addr, "GET", "/v1/policy/read/gateway", admin).json
    assert policy["allow"]["/v1/key/generate/*"] == {} and policy["created_by"] == admin_id
    assert call(addr, "GET", "/v1/policy/describe/gateway", admin).json["name"] == "gateway"
    missing = call(addr, "GET", "/v1/policy/read/nope", admin)
    assert (missing.status, missing.message) == (404, "policy does not exist")
    assert call(addr, "GET", f"/v1/identity/describe/{gateway_id}", admin).json[
        "policy"] == "gateway"
    assert call(addr, "GET", f"/v1/identity/describe/{admin_id}", admin).json["admin"] is True
    unknown = call(addr, "GET", f"/v1/identity/describe/{'0' * 64}", admin)
    assert (unknown.status, unknown.message) == (404, "identity does not exist")
    assert sorted(call(addr, "GET", "/v1/identity/list/*", admin).json["identities"]) == sorted(
        [admin_id, gateway_id])
    me = call(addr, "GET", "/v1/identity/self/describe", gateway).json
    assert me["identity"] == gateway_id and me["policy"]["name"] == "gateway"
    assert call(addr, "GET", "/v1/identity/self/describe", admin).json["admin"] is True


def test_policy_limits_the_gateway_identity(addr: str, gateway: ssl.SSLContext) -> None:
    doc = call(addr, "POST", "/v1/key/generate/minio-default-key", gateway, {}).json
    assert "ciphertext" in doc
    for method, path in (("DELETE", "/v1/key/delete/minio-default-key"),
                         ("GET", "/v1/policy/list/*"), ("PUT", "/v1/key/import/x"),
                         ("POST", "/v1/key/encrypt/minio-default-key")):
        reply = call(addr, method, path, gateway, {})
        assert (reply.status, reply.message) == (403, NOT_ALLOWED), path


def test_tls_rejects_missing_and_foreign_certificates(kes: Cluster, addr: str,
                                                      tmp_path: Path) -> None:
    other = ClusterCA.open(tmp_path / "other").issue("stranger", server=False)
    for ctx in (tls_context(kes.ca_path, None, None),
                tls_context(kes.ca_path, other.cert, other.key)):
        with pytest.raises((ssl.SSLError, ConnectionError)):
            call(addr, "GET", "/version", ctx)


def test_a_ciphertext_from_one_server_decrypts_on_the_other(
        addr: str, addr2: str, admin: ssl.SSLContext) -> None:
    call(addr, "POST", "/v1/key/create/shared-key", admin)
    # created on server 1, seen at once by server 2 (one directory keystore)
    assert call(addr2, "GET", "/v1/key/describe/shared-key", admin).status == 200
    assert "shared-key" in call(addr2, "GET", "/v1/key/list/shared", admin).json["names"]
    doc = call(addr, "POST", "/v1/key/generate/shared-key", admin,
               {"context": b64(b"ctx")}).json
    assert call(addr2, "POST", "/v1/key/decrypt/shared-key", admin,
                {"ciphertext": doc["ciphertext"], "context": b64(b"ctx")}).json == {
        "plaintext": doc["plaintext"]}
    wrong = call(addr2, "POST", "/v1/key/decrypt/shared-key", admin,
                 {"ciphertext": doc["ciphertext"], "context": b64(b"ctx2")})
    assert (wrong.status, wrong.message) == (400, DECRYPT)


def test_create_race_between_two_servers(kes: Cluster, addr: str, addr2: str,
                                         admin: ssl.SSLContext) -> None:
    results: dict[str, list[tuple[int, str]]] = {f"race-{i}": [] for i in range(5)}
    barrier = threading.Barrier(4)

    def worker(target: str) -> None:
        for name, outcomes in results.items():
            barrier.wait(10)
            reply = call(target, "POST", f"/v1/key/create/{name}", admin)
            outcomes.append((reply.status, reply.body.decode()))

    threads = [threading.Thread(target=worker, args=(a,)) for a in (addr, addr2, addr, addr2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    for name, outcomes in results.items():
        statuses = sorted(s for s, _ in outcomes)
        assert statuses == [200, 400, 400, 400], (name, outcomes)
        assert sum('"key already exists"' in body for _, body in outcomes) == 3
        stored = Path(kes.records[0].data_dir) / name
        decode_key(stored.read_bytes())  # one complete key file in the shared directory


def test_key_file_format_on_disk_and_legacy_file(kes: Cluster, addr: str,
                                                 admin: ssl.SSLContext) -> None:
    keystore = Path(kes.records[0].data_dir)
    text = (keystore / "minio-default-key").read_bytes()
    base64.b64decode(text, validate=True)  # base64 protobuf, as KES writes
    master = b"\x05" * 32
    (keystore / "legacy-key").write_text(json.dumps({
        "bytes": b64(master), "algorithm": "AES256-GCM_SHA256",
        "created_at": "2022-05-06T07:08:09.5Z", "created_by": ""}))
    ct = unb64(call(addr, "POST", "/v1/key/encrypt/legacy-key", admin,
                    {"plaintext": b64(b"old")}).json["ciphertext"])
    iv, nonce = ct[-28:-12], ct[-12:]
    assert AESGCM(hmac.new(master, iv, hashlib.sha256).digest()).decrypt(
        nonce, ct[:-28], b"") == b"old"
    reply = call(addr, "PUT", "/v1/key/hmac/legacy-key", admin, {"message": b64(b"m")})
    assert (reply.status, reply.message) == (409, "key does not support HMAC")


def test_a_stalled_client_does_not_block_others(addr: str, admin: ssl.SSLContext) -> None:
    host, port = addr.rsplit(":", 1)
    raw = socket.create_connection((host, int(port)), timeout=10)
    stalled = admin.wrap_socket(raw, server_hostname=host)
    stalled.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n")  # header never finished
    start = time.monotonic()
    assert call(addr, "GET", "/version", admin).status == 200
    assert time.monotonic() - start < 1
    assert stalled.recv(100) == b""  # closed by the 5 s header deadline
    assert time.monotonic() - start < 8
    stalled.close()


def test_keystore_outage_within_offline_window(kes: Cluster, addr: str,
                                               admin: ssl.SSLContext) -> None:
    """The launcher's config caches keys offline for 10 min: generate and decrypt keep working
    while the keystore directory is gone; what needs the keystore answers 502."""
    doc = call(addr, "POST", "/v1/key/generate/minio-default-key", admin, {}).json
    keystore = Path(kes.records[0].data_dir)
    moved = keystore.with_name("kes-keystore-away")
    keystore.rename(moved)
    try:
        for _ in range(20):
            again = call(addr, "POST", "/v1/key/generate/minio-default-key", admin, {})
            assert again.status == 200
            assert call(addr, "POST", "/v1/key/decrypt/minio-default-key", admin,
                        {"ciphertext": doc["ciphertext"]}).json == {"plaintext": doc["plaintext"]}
        status = call(addr, "GET", "/v1/status", admin).json
        assert status["keystore_unreachable"] is True and status["keystore_unavailable"] is True
        ready = call(addr, "GET", "/v1/ready", admin)
        assert (ready.status, ready.message) == (504, "key store is not reachable")
        created = call(addr, "POST", "/v1/key/create/during-outage", admin)
        assert (created.status, created.message) == (502, "failed to create key")
        uncached = call(addr, "POST", "/v1/key/generate/never-cached", admin, {})
        assert (uncached.status, uncached.message) == (502, "failed to read key")
    finally:
        moved.rename(keystore)
    deadline = time.monotonic() + 3  # while offline the store is re-probed once a second
    while call(addr, "GET", "/v1/ready", admin).status != 200:
        assert time.monotonic() < deadline
        time.sleep(0.1)
