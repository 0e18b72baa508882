"""s3cmd (`.venv/bin/s3cmd`, path style) against a real cluster: buckets, single and multipart
PUTs read back by digest, listings, `info`, sync both ways, SSE-S3 and SSE-KMS over HTTP and
HTTPS, signature v2, presigned (v2) URLs, refused public ACLs and a wrong secret."""

from __future__ import annotations

import os
import re
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

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

S3CMD = Path(sys.executable).parent / "s3cmd"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with client_cluster(tmp_path_factory.mktemp("s3cmd-cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def s3(cluster: Cluster) -> S3Endpoint:
    return endpoint(cluster)


def _config(path: Path, s3: S3Endpoint, *, https: bool, secret: str | None = None) -> Path:
    host = urlsplit(s3.https_url if https else s3.url).netloc
    path.write_text("\n".join([
        "[default]",
        f"access_key = {s3.access_key}",
        f"secret_key = {secret or s3.secret_key}",
        f"host_base = {host}",
        f"host_bucket = {host}",  # no %(bucket)s: path-style requests
        f"use_https = {https}",
        "signature_v2 = False",
        "bucket_location = us-east-1",
        "check_ssl_certificate = True",
        f"ca_certs_file = {s3.ca if https else ''}",
        "progress_meter = False",
        "max_retries = 1",
        "socket_timeout = 30",
    ]) + "\n")
    return path


@pytest.fixture(scope="module")
def s3cmd(s3: S3Endpoint, tmp_path_factory: pytest.TempPathFactory):
    """`s3cmd(*args, https=False, check=True, secret=None)` -> CompletedProcess."""
    home = tmp_path_factory.mktemp("s3cmd-home")
    env = client_env(home)
    configs = {https: _config(home / f"s3cfg-{https}", s3, https=https) for https in (0, 1)}

    def call(*args: str, https: bool = False, check: bool = True, secret: str | None = None,
             stdin: bytes | None = None):
        config = configs[int(https)] if secret is None else \
            _config(home / "s3cfg-secret", s3, https=https, secret=secret)
        return run([str(S3CMD), "-c", str(config), *args], env, check=check, stdin=stdin)

    return call


_LS_LINE = re.compile(r"^\S+ \S+\s+(\d+)\s+(?:([0-9a-f]{32}(?:-\d+)?)\s+)?(s3://.*)$")


def _ls(output: str) -> dict[str, tuple[int, str | None]]:
    """`s3cmd ls/la [--list-md5]` lines as uri -> (size, md5 or None); DIR lines as -1."""
    entries: dict[str, tuple[int, str | None]] = {}
    for line in output.splitlines():
        if line.strip().startswith("DIR"):
            entries[line.split("DIR", 1)[1].strip()] = (-1, None)
        elif match := _LS_LINE.match(line):
            entries[match.group(3)] = (int(match.group(1)), match.group(2))
    return entries


def _info(s3cmd, uri: str, **kw) -> dict[str, str]:
    """`s3cmd info` as a dict of its "   Name:   value" lines."""
    out = s3cmd("info", uri, **kw).stdout
    fields = {}
    for line in out.splitlines():
        name, sep, value = line.strip().partition(":")
        if sep and line.startswith("   "):
            fields[name.strip()] = value.strip()
    return fields


def test_buckets_objects_multipart_and_info(s3cmd, s3, tmp_path):
    small, big = os.urandom(300_000), os.urandom(12 * MiB + 77)
    (tmp_path / "small.bin").write_bytes(small)
    (tmp_path / "big.bin").write_bytes(big)
    s3cmd("mb", "s3://s3cmd-basic")
    assert "s3://s3cmd-basic" in s3cmd("ls").stdout
    # --no-preserve: no md5 of s3cmd's own in the metadata, so `info` shows our ETag
    s3cmd("put", "--no-preserve", str(tmp_path / "small.bin"), "s3://s3cmd-basic/small.bin")
    s3cmd("put", "--multipart-chunk-size-mb=5", str(tmp_path / "big.bin"),
          "s3://s3cmd-basic/dir/big.bin")
    client = s3.client()
    assert client.head_object(Bucket="s3cmd-basic", Key="dir/big.bin")["ETag"].endswith('-3"')

    listing = _ls(s3cmd("ls", "--list-md5", "s3://s3cmd-basic").stdout)
    assert listing == {"s3://s3cmd-basic/dir/": (-1, None),
                       "s3://s3cmd-basic/small.bin": (300_000, md5_hex(small))}
    everything = _ls(s3cmd("la", "--recursive").stdout)
    assert everything["s3://s3cmd-basic/dir/big.bin"] == (len(big), None)

    info = _info(s3cmd, "s3://s3cmd-basic/small.bin")
    assert (info["File size"], info["MD5 sum"], info["SSE"]) == ("300000", md5_hex(small), "none")
    info = _info(s3cmd, "s3://s3cmd-basic/dir/big.bin")  # md5 from s3cmd's own metadata
    assert (info["File size"], info["MD5 sum"]) == (str(len(big)), md5_hex(big))
    assert info["ACL"] == f"{s3.access_key}: FULL_CONTROL"
    bucket_info = _info(s3cmd, "s3://s3cmd-basic")
    assert bucket_info["Location"] == "us-east-1"

    for key, data in (("small.bin", small), ("dir/big.bin", big)):
        out = tmp_path / "got.bin"
        s3cmd("get", "--force", f"s3://s3cmd-basic/{key}", str(out))
        assert md5_hex(out.read_bytes()) == md5_hex(data)

    failed = s3cmd("rb", "s3://s3cmd-basic", check=False)
    assert failed.returncode != 0 and "BucketNotEmpty" in failed.stderr
    s3cmd("del", "--recursive", "--force", "s3://s3cmd-basic")
    s3cmd("rb", "s3://s3cmd-basic")
    assert "s3://s3cmd-basic" not in s3cmd("ls").stdout


def test_put_from_stdin_streams_multipart(s3cmd, s3):
    data = os.urandom(11 * MiB)
    s3cmd("mb", "s3://s3cmd-stdin")
    s3cmd("put", "--multipart-chunk-size-mb=5", "-", "s3://s3cmd-stdin/piped", stdin=data)
    got = s3.client().get_object(Bucket="s3cmd-stdin", Key="piped")
    assert got["ETag"].endswith('-3"')
    assert md5_hex(got["Body"].read()) == md5_hex(data)


def test_sync_both_ways(s3cmd, tmp_path):
    local = tmp_path / "up"
    files = make_tree(local)
    s3cmd("mb", "s3://s3cmd-sync")
    s3cmd("sync", f"{local}/", "s3://s3cmd-sync/tree/")
    listed = _ls(s3cmd("ls", "--recursive", "--list-md5", "s3://s3cmd-sync/tree/").stdout)
    assert listed == {f"s3://s3cmd-sync/tree/{name}": (len(data), md5_hex(data))
                      for name, data in files.items()}

    down = tmp_path / "down"
    s3cmd("sync", "s3://s3cmd-sync/tree/", f"{down}/")
    assert read_tree(down) == files

    (local / "x.txt").write_bytes(b"changed, same length\n"[:14])  # same size, new md5
    (local / "a/y.bin").unlink()
    (local / "new.txt").write_bytes(b"new")
    s3cmd("sync", "--delete-removed", f"{local}/", "s3://s3cmd-sync/tree/")
    s3cmd("sync", "--delete-removed", "s3://s3cmd-sync/tree/", f"{down}/")
    assert read_tree(down) == read_tree(local)
    again = s3cmd("sync", "--dry-run", "--delete-removed", f"{local}/",
                  "s3://s3cmd-sync/tree/").stdout  # sizes and MD5s (ETags) all match
    assert "upload:" not in again and "delete:" not in again, again


@pytest.mark.parametrize("https", [False, True], ids=["http", "https"])
def test_server_side_encryption(s3cmd, s3, tmp_path, https):
    bucket = f"s3cmd-sse-{'tls' if https else 'plain'}"
    data = os.urandom(200_000)
    big = os.urandom(11 * MiB)
    (tmp_path / "f").write_bytes(data)
    (tmp_path / "big").write_bytes(big)
    s3cmd("mb", f"s3://{bucket}", https=https)
    s3cmd("put", "--no-preserve", "--server-side-encryption", str(tmp_path / "f"),
          f"s3://{bucket}/sse-s3", https=https)
    s3cmd("put", "--no-preserve", f"--server-side-encryption-kms-id={KMS_KEY}",
          str(tmp_path / "f"), f"s3://{bucket}/sse-kms", https=https)
    upload = s3cmd("put", "--server-side-encryption", "--multipart-chunk-size-mb=5",
                   str(tmp_path / "big"), f"s3://{bucket}/sse-s3-multipart", https=https)
    assert "MD5 Sums don't match" not in upload.stderr

    info = _info(s3cmd, f"s3://{bucket}/sse-s3", https=https)
    # SSE-S3: the ETag is the plaintext MD5, as on AWS (s3cmd compares it after each PUT)
    assert (info["SSE"], info["MD5 sum"]) == ("AES256", md5_hex(data))
    assert _info(s3cmd, f"s3://{bucket}/sse-kms", https=https)["SSE"] == "aws:kms"
    assert _info(s3cmd, f"s3://{bucket}/sse-s3-multipart", https=https)["SSE"] == "AES256"
    head = s3.client().head_object(Bucket=bucket, Key="sse-kms")
    assert (head["ServerSideEncryption"], head["SSEKMSKeyId"]) == \
        ("aws:kms", f"arn:aws:kms:{KMS_KEY}")

    for key, expected in (("sse-s3", data), ("sse-kms", data), ("sse-s3-multipart", big)):
        out = tmp_path / f"got-{key}"
        got = s3cmd("get", f"s3://{bucket}/{key}", str(out), https=https)
        assert "MD5 signatures do not match" not in got.stderr, got.stderr
        assert md5_hex(out.read_bytes()) == md5_hex(expected)


def test_signature_v2(s3cmd, s3, tmp_path):
    data, big = os.urandom(50_000), os.urandom(11 * MiB)
    (tmp_path / "f").write_bytes(data)
    (tmp_path / "big").write_bytes(big)
    s3cmd("--signature-v2", "mb", "s3://s3cmd-v2")
    s3cmd("--signature-v2", "put", str(tmp_path / "f"), "s3://s3cmd-v2/f")
    s3cmd("--signature-v2", "put", "--multipart-chunk-size-mb=5", str(tmp_path / "big"),
          "s3://s3cmd-v2/big")
    assert "s3://s3cmd-v2/big" in s3cmd("--signature-v2", "ls", "s3://s3cmd-v2").stdout
    for key, expected in (("f", data), ("big", big)):
        out = tmp_path / f"got-{key}"
        s3cmd("--signature-v2", "get", f"s3://s3cmd-v2/{key}", str(out))
        assert out.read_bytes() == expected


def test_signed_url_is_fetched_without_credentials(s3cmd):
    data = os.urandom(4096)
    s3cmd("mb", "s3://s3cmd-url")
    s3cmd("put", "-", "s3://s3cmd-url/shared", stdin=data)
    url = s3cmd("signurl", "s3://s3cmd-url/shared", "+300").stdout.strip()
    assert "Signature=" in url and "AWSAccessKeyId=" in url  # a SigV2 query presign
    with urllib.request.urlopen(url, timeout=10) as response:
        assert response.read() == data
    tampered = url.replace("shared", "other")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(tampered, timeout=10)
    assert exc.value.code == 403


def test_public_acl_is_refused_not_dropped(s3cmd, s3, tmp_path):
    (tmp_path / "f").write_bytes(b"secret")
    s3cmd("mb", "s3://s3cmd-acl")
    refused = s3cmd("put", "--acl-public", str(tmp_path / "f"), "s3://s3cmd-acl/f", check=False)
    assert refused.returncode != 0
    assert "AccessControlListNotSupported" in refused.stderr, refused.stderr
    assert s3.client().list_objects_v2(Bucket="s3cmd-acl")["KeyCount"] == 0
    s3cmd("put", "--acl-private", str(tmp_path / "f"), "s3://s3cmd-acl/f")


@pytest.mark.parametrize("signature", ["v4", "v2"])
def test_wrong_secret_is_signature_does_not_match(s3cmd, signature):
    args = ["--signature-v2"] if signature == "v2" else []
    result = s3cmd(*args, "ls", check=False, secret="not-the-secret-0000")
    assert result.returncode == 77  # s3cmd's EX_ACCESSDENIED
    assert "403 (SignatureDoesNotMatch)" in result.stderr
