"""The SIGHUP reload's file checks and the drain switch's once-a-second look, without processes
(the real-process behaviour is in tests/integration/test_ops_reload.py and
test_ops_maintenance.py)."""

from __future__ import annotations

import contextlib
import shutil
import ssl
import time

import pytest
from cryptography import x509

from cluster.certs import ClusterCA
from gateway.config import load_config
from gateway.ops.drain import DrainSwitch
from gateway.ops.reload import check_pair, load_server_certificate
from tests.unit.test_s3_app import ACCESS, SECRET


@pytest.fixture
def ca(tmp_path):
    return ClusterCA.open(tmp_path / "certs")


def test_a_key_of_another_certificate_is_named_and_changes_nothing(ca, tmp_path):
    first, second = ca.issue("first"), ca.issue("second")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_server_certificate(context, first.cert, first.key)
    with pytest.raises(ValueError, match="is not the key of the certificate"):
        check_pair(second.cert, first.key)
    # OpenSSL itself refuses the pair too, before the live context is touched
    with pytest.raises(ssl.SSLError):
        load_server_certificate(context, second.cert, first.key)
    assert _served_serial(context, ca) == _serial(first.cert)
    load_server_certificate(context, second.cert, second.key)
    assert _served_serial(context, ca) == _serial(second.cert)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnope\n")
    with pytest.raises(ValueError, match="holds no PEM certificate"):
        check_pair(garbage, first.key)
    with pytest.raises(ValueError, match="holds no readable PEM private key"):
        check_pair(first.cert, garbage)
    check_pair(first.cert, first.key)


def _serial(path) -> int:
    return x509.load_pem_x509_certificate(path.read_bytes()).serial_number


def _served_serial(context: ssl.SSLContext, ca: ClusterCA) -> int:
    """A TLS handshake in memory against `context`: the serial it serves."""
    client_ctx = ssl.create_default_context(cafile=str(ca.cert_path))
    bios = [ssl.MemoryBIO() for _ in range(4)]
    client = client_ctx.wrap_bio(bios[0], bios[1], server_hostname="127.0.0.1")
    server = context.wrap_bio(bios[2], bios[3], server_side=True)
    for _ in range(10):
        for end, outgoing, peer_in in ((client, bios[1], bios[2]), (server, bios[3], bios[0])):
            with contextlib.suppress(ssl.SSLWantReadError):
                end.do_handshake()
            peer_in.write(outgoing.read())
    return x509.load_der_x509_certificate(client.getpeercert(binary_form=True)).serial_number


def test_the_drain_file_is_looked_at_once_per_interval(tmp_path):
    path = tmp_path / "drain"
    switch = DrainSwitch(path, interval=0.3)
    assert not switch.draining
    path.write_text("")
    assert not switch.draining  # within the interval: the last look stands
    time.sleep(0.35)
    assert switch.draining
    path.unlink()
    time.sleep(0.35)
    assert not switch.draining
    assert not DrainSwitch(None).draining


def test_the_drain_file_defaults_to_the_state_dir(tmp_path):
    env = {"MINIO_ROOT_USER": ACCESS, "MINIO_ROOT_PASSWORD": SECRET}
    base = ["--listen", "127.0.0.1:9999", "--memory"]
    assert load_config(base, env).drain_file is None
    assert load_config([*base, "--state-dir", str(tmp_path)], env).drain_file == \
        tmp_path / "drain"
    assert load_config([*base, "--state-dir", str(tmp_path)],
                       {**env, "TESSERA_DRAIN_FILE": "/run/x"}).drain_file.as_posix() == "/run/x"
    assert load_config([*base, "--drain-file", "/run/y"], env).drain_file.as_posix() == "/run/y"


def test_copies_are_what_gets_loaded(ca, tmp_path):
    pair = ca.issue("served")
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    shutil.copyfile(pair.cert, cert)
    shutil.copyfile(pair.key, key)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    load_server_certificate(context, cert, key)
    assert not list(tmp_path.glob("tessera-reload-*"))
