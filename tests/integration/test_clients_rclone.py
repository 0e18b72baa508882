"""rclone (Debian's 1.60, installed by `make test`) against a real cluster with two gateways:
trees copied up through one gateway and checked (MD5s) and copied down through the other,
lsjson, forced multipart uploads and copies, SSE-S3 / SSE-KMS / SSE-C, sync, delete and purge,
presigned links, and a wrong secret. The S3 remotes come from RCLONE_CONFIG_* variables:
provider Minio, v4 signatures, path style."""

from __future__ import annotations

import base64
import json
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from cluster.launcher import Cluster
from tests.integration.client_helpers import (
    KMS_KEY,
    MiB,
    client_cluster,
    client_env,
    make_tree,
    md5_hex,
    read_tree,
    run,
)
from tests.integration.s3_gateway import S3Endpoint
from tests.integration.sse_helpers import endpoint

RCLONE = shutil.which("rclone")


def _why_missing() -> str:
    if shutil.which("apt-get") is None:
        return "rclone is not installed and there is no apt-get to install it with"
    if os.geteuid() != 0:
        return "rclone is not installed and apt-get needs root (run `make test-tools` as root)"
    return "rclone is not installed: `make test` installs it with apt-get (did it fail?)"


pytestmark = pytest.mark.skipif(RCLONE is None, reason=_why_missing() if RCLONE is None else "")

# quick failure instead of rclone's default retries with back-off
BOUNDED = ["--retries", "1", "--low-level-retries", "1", "--contimeout", "10s",
           "--timeout", "60s"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with client_cluster(tmp_path_factory.mktemp("rclone-cluster"), gateways=2) as c:
        yield c


@pytest.fixture(scope="module")
def s3(cluster: Cluster) -> S3Endpoint:
    return endpoint(cluster, 0)


def _remote(name: str, url: str, s3: S3Endpoint, secret: str | None = None) -> dict[str, str]:
    prefix = f"RCLONE_CONFIG_{name}_"
    return {f"{prefix}TYPE": "s3", f"{prefix}PROVIDER": "Minio",
            f"{prefix}ACCESS_KEY_ID": s3.access_key,
            f"{prefix}SECRET_ACCESS_KEY": secret or s3.secret_key,
            f"{prefix}ENDPOINT": url, f"{prefix}REGION": "us-east-1",
            f"{prefix}FORCE_PATH_STYLE": "true"}


@pytest.fixture(scope="module")
def rclone(cluster: Cluster, s3: S3Endpoint, tmp_path_factory: pytest.TempPathFactory):
    """`rclone(*args, check=True)`; remotes: gw1 and gw2 (HTTP, one per gateway), tls
    (gateway 1 over HTTPS with the cluster CA), bad (a wrong secret)."""
    home = tmp_path_factory.mktemp("rclone-home")
    second = endpoint(cluster, 1)
    env = client_env(home, {"RCLONE_CONFIG": str(home / "rclone.conf"),
                            "RCLONE_CA_CERT": str(s3.ca)})
    env.update(_remote("GW1", s3.url, s3))
    env.update(_remote("GW2", second.url, s3))
    env.update(_remote("TLS", s3.https_url, s3))
    env.update(_remote("BAD", s3.url, s3, secret="not-the-secret-0000"))

    def call(*args: str, check: bool = True, stdin: bytes | None = None, binary: bool = False):
        assert RCLONE is not None
        return run([RCLONE, *args, *BOUNDED], env, check=check, stdin=stdin, binary=binary)

    return call


def _lsjson(rclone, remote: str, *flags: str) -> dict[str, dict]:
    listing = json.loads(rclone("lsjson", "-R", "--hash", "--files-only", *flags, remote).stdout)
    return {entry["Path"]: entry for entry in listing}


def test_copy_up_check_and_down_through_two_gateways(rclone, tmp_path):
    local = tmp_path / "up"
    files = make_tree(local)
    rclone("mkdir", "gw1:rc-tree")
    rclone("copy", str(local), "gw1:rc-tree/t")
    check = rclone("check", str(local), "gw2:rc-tree/t")  # sizes and MD5s, other gateway
    assert f"{len(files)} matching files" in check.stderr, check.stderr

    listed = _lsjson(rclone, "gw2:rc-tree/t")
    assert {p: (e["Size"], e["Hashes"]["md5"]) for p, e in listed.items()} == \
        {n: (len(d), md5_hex(d)) for n, d in files.items()}

    down = tmp_path / "down"
    rclone("copy", "gw2:rc-tree/t", str(down))
    assert read_tree(down) == files

    (local / "x.txt").write_bytes(b"HELLO TESSERA\n")  # same size, other MD5
    mismatch = rclone("check", str(local), "gw1:rc-tree/t", check=False)
    assert mismatch.returncode != 0 and "1 differences found" in mismatch.stderr


def test_forced_multipart_upload_and_server_side_copy(rclone, s3, tmp_path):
    data = os.urandom(2 * 5 * MiB + 4321)
    (tmp_path / "big.bin").write_bytes(data)
    rclone("copyto", str(tmp_path / "big.bin"), "gw1:rc-multi/big.bin",
           "--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M")
    client = s3.client()
    assert client.head_object(Bucket="rc-multi", Key="big.bin")["ETag"].endswith('-3"')
    # a multipart ETag is no MD5: rclone keeps its own in metadata and checks with it
    assert _lsjson(rclone, "gw2:rc-multi")["big.bin"]["Hashes"]["md5"] == md5_hex(data)
    rclone("check", str(tmp_path), "gw2:rc-multi")

    # above --s3-copy-cutoff a server-side copy is a multipart UploadPartCopy
    rclone("copyto", "gw1:rc-multi/big.bin", "gw1:rc-multi/copy.bin", "--s3-copy-cutoff", "5M")
    head = client.head_object(Bucket="rc-multi", Key="copy.bin")
    assert head["ContentLength"] == len(data) and head["ETag"].endswith('-3"')
    sums = rclone("md5sum", "gw2:rc-multi").stdout.split("\n")
    assert f"{md5_hex(data)}  copy.bin" in sums and f"{md5_hex(data)}  big.bin" in sums
    cut = rclone("cat", "gw2:rc-multi/copy.bin", "--offset", str(5 * MiB - 8), "--count", "16",
                 binary=True)
    assert cut.stdout == data[5 * MiB - 8:5 * MiB + 8]  # a ranged GET across parts


def test_sse_s3_and_kms(rclone, s3, tmp_path):
    local = tmp_path / "up"
    files = make_tree(local)
    big = os.urandom(2 * 5 * MiB + 1)
    (local / "big.bin").write_bytes(big)
    files["big.bin"] = big
    multipart = ["--s3-upload-cutoff", "5M", "--s3-chunk-size", "5M"]
    rclone("copy", str(local), "gw1:rc-sse/s3", "--s3-server-side-encryption", "AES256",
           *multipart)
    kms = ["--s3-server-side-encryption", "aws:kms", "--s3-sse-kms-key-id", KMS_KEY]
    rclone("copy", str(local), "gw1:rc-sse/kms", *kms, *multipart)

    client = s3.client()
    for key in ("s3/x.txt", "s3/big.bin"):
        assert client.head_object(Bucket="rc-sse", Key=key)["ServerSideEncryption"] == "AES256"
    for key in ("kms/x.txt", "kms/big.bin"):
        head = client.head_object(Bucket="rc-sse", Key=key)
        assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == \
            ("aws:kms", f"arn:aws:kms:{KMS_KEY}")

    # SSE-S3 ETags are MD5s as on AWS; SSE-KMS ETags are not (as on AWS): told about KMS,
    # rclone checks with the MD5 it stored in metadata
    rclone("check", str(local), "gw2:rc-sse/s3")
    rclone("check", str(local), "gw2:rc-sse/kms", *kms)
    for prefix in ("s3", "kms"):
        down = tmp_path / f"down-{prefix}"
        rclone("copy", f"gw2:rc-sse/{prefix}", str(down))
        assert read_tree(down) == files


def test_sse_c_over_https(rclone, s3, tmp_path):
    local = tmp_path / "up"
    files = make_tree(local)
    key = ["--s3-sse-customer-algorithm", "AES256", "--s3-sse-customer-key-base64",
           base64.b64encode(os.urandom(32)).decode()]
    rclone("copy", str(local), "tls:rc-ssec/t", *key)
    head = s3.client().head_object  # without the key, the object cannot be read
    with pytest.raises(Exception, match="400"):
        head(Bucket="rc-ssec", Key="t/x.txt")
    down = tmp_path / "down"
    rclone("copy", "tls:rc-ssec/t", str(down), *key)
    assert read_tree(down) == files
    wrong = ["--s3-sse-customer-algorithm", "AES256", "--s3-sse-customer-key-base64",
             base64.b64encode(os.urandom(32)).decode()]
    failed = rclone("copy", "tls:rc-ssec/t", str(tmp_path / "wrong"), *wrong, check=False)
    assert failed.returncode != 0
    assert "AccessDenied: The SSE-C key provided does not match" in failed.stderr
    assert not (tmp_path / "wrong").exists() or read_tree(tmp_path / "wrong") == {}


def test_sync_delete_and_purge(rclone, s3, tmp_path):
    local = tmp_path / "up"
    files = make_tree(local)
    rclone("sync", str(local), "gw1:rc-sync/t", "--checksum")
    (local / "a/y.bin").unlink()
    (local / "added.txt").write_bytes(b"added")
    rclone("sync", str(local), "gw1:rc-sync/t", "--checksum")
    listed = _lsjson(rclone, "gw2:rc-sync/t")
    expected = read_tree(local)
    assert {p: e["Size"] for p, e in listed.items()} == {n: len(d) for n, d in expected.items()}
    assert "a/y.bin" in files and "a/y.bin" not in listed

    rclone("delete", "gw1:rc-sync/t", "--include", "*.txt")
    left = set(_lsjson(rclone, "gw2:rc-sync/t"))
    assert left == {n for n in expected if not n.endswith(".txt")}
    rclone("purge", "gw1:rc-sync")
    assert "rc-sync" not in rclone("lsf", "gw2:").stdout.split()
    with pytest.raises(Exception, match="404"):
        s3.client().head_bucket(Bucket="rc-sync")


def test_presigned_link(rclone):
    data = os.urandom(3000)
    rclone("mkdir", "gw1:rc-link")
    rclone("rcat", "gw1:rc-link/shared", stdin=data)
    url = rclone("link", "gw1:rc-link/shared", "--expire", "5m").stdout.strip()
    assert "X-Amz-Signature=" in url
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(url.replace("shared", "other"), timeout=10)
    assert exc.value.code == 403


def test_wrong_secret(rclone):
    failed = rclone("lsf", "bad:", check=False)
    assert failed.returncode != 0
    assert "SignatureDoesNotMatch" in failed.stderr and "403" in failed.stderr
