"""Encryption configured as a MinIO operator does it, on a real cluster started the way
`MINIO_KMS_AUTO_ENCRYPTION=on make cluster` starts one: auto-encrypting gateways, a gateway
without a KMS, one-line refusals at start, and key rotation with `python -m gateway.rotate`."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from unittest import mock

import pytest
from botocore.exceptions import ClientError

from cluster.launcher import Cluster
from tests.conftest import running_cluster
from tests.integration.sse_helpers import (
    customer,
    endpoint,
    extra_gateway,
    gateway_refusal,
    kes_admin,
    run_rotate,
)

KEY_C = os.urandom(32)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    # what `MINIO_KMS_AUTO_ENCRYPTION=on make cluster` does: the launcher passes MINIO_* on
    with mock.patch.dict(os.environ, {"MINIO_KMS_AUTO_ENCRYPTION": "on"}):
        root = tmp_path_factory.mktemp("sse-config")
        with running_cluster(root, nodes=6, gateways=1, kes=2) as c:
            yield c


@pytest.fixture(scope="module")
def client(cluster: Cluster):
    return endpoint(cluster).client(https=True)


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def test_auto_encryption_reports_aes256_to_the_aws_cli(cluster, tmp_path):
    s3 = endpoint(cluster)
    s3.aws("s3", "mb", "s3://auto")
    source = tmp_path / "hello.txt"
    source.write_bytes(b"no encryption headers were sent\n")
    s3.aws("s3", "cp", "--no-progress", str(source), "s3://auto/hello.txt")
    head = s3.aws("s3api", "head-object", "--bucket", "auto", "--key", "hello.txt")
    assert '"ServerSideEncryption": "AES256"' in head.stdout
    debug = s3.aws("s3api", "head-object", "--bucket", "auto", "--key", "hello.txt",
                   "--debug")
    assert re.search(r"['\"]x-amz-server-side-encryption['\"]: ['\"]AES256['\"]",
                     debug.stderr)
    back = tmp_path / "back.txt"
    s3.aws("s3", "cp", "--no-progress", "s3://auto/hello.txt", str(back))
    assert back.read_bytes() == source.read_bytes()


def test_auto_encryption_leaves_ssec_to_the_client_and_applies_to_multipart(client):
    client.create_bucket(Bucket="auto-c")
    put = client.put_object(Bucket="auto-c", Key="c", Body=b"mine", **customer(KEY_C))
    assert "ServerSideEncryption" not in put and put["SSECustomerAlgorithm"] == "AES256"
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket="auto-c", Key="c")
    assert _error(exc) == ("InvalidRequest", 400)
    upload = client.create_multipart_upload(Bucket="auto-c", Key="mp")
    assert upload["ServerSideEncryption"] == "AES256"
    part = client.upload_part(Bucket="auto-c", Key="mp", PartNumber=1,
                              UploadId=upload["UploadId"], Body=b"part one")
    done = client.complete_multipart_upload(
        Bucket="auto-c", Key="mp", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]})
    assert done["ServerSideEncryption"] == "AES256"
    assert client.get_object(Bucket="auto-c", Key="mp")["Body"].read() == b"part one"


def test_a_gateway_without_kms_answers_501_but_serves_ssec(cluster, client, tmp_path):
    client.create_bucket(Bucket="no-kms")
    client.put_object(Bucket="no-kms", Key="s3", Body=b"x", ServerSideEncryption="AES256")
    without = {name: None for name in ("MINIO_KMS_KES_ENDPOINT", "MINIO_KMS_KES_CERT_FILE",
                                       "MINIO_KMS_KES_KEY_FILE", "MINIO_KMS_KES_CAPATH",
                                       "MINIO_KMS_KES_KEY_NAME", "MINIO_KMS_AUTO_ENCRYPTION")}
    with extra_gateway(cluster, tmp_path / "gw", without) as plain:
        other = plain.client(https=True)
        with pytest.raises(ClientError) as exc:
            other.put_object(Bucket="no-kms", Key="k", Body=b"x", ServerSideEncryption="AES256")
        assert _error(exc) == ("NotImplemented", 501)
        with pytest.raises(ClientError) as exc:
            other.get_object(Bucket="no-kms", Key="s3")
        assert _error(exc) == ("NotImplemented", 501)
        rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
        with pytest.raises(ClientError) as exc:
            other.put_bucket_encryption(Bucket="no-kms",
                                        ServerSideEncryptionConfiguration={"Rules": [rule]})
        assert _error(exc) == ("NotImplemented", 501)
        other.put_object(Bucket="no-kms", Key="c", Body=b"ssec", **customer(KEY_C))
        plain_put = other.put_object(Bucket="no-kms", Key="plain", Body=b"p")
        assert "ServerSideEncryption" not in plain_put  # no auto-encryption here
    assert client.get_object(Bucket="no-kms", Key="c", **customer(KEY_C))["Body"].read() == \
        b"ssec"


@pytest.mark.parametrize(("overrides", "expected"), [
    ({"MINIO_KMS_KES_ENDPOINT": None}, "MINIO_KMS_AUTO_ENCRYPTION=on needs a KMS"),
    ({"MINIO_KMS_KES_KEY_NAME": None}, "MINIO_KMS_KES_KEY_NAME is not set"),
    ({"MINIO_KMS_KES_CERT_FILE": "/nonexistent/client.crt"},
     "MINIO_KMS_KES_CERT_FILE: /nonexistent/client.crt does not exist"),
    ({"MINIO_KMS_AUTO_ENCRYPTION": "yes"}, "MINIO_KMS_AUTO_ENCRYPTION must be 'on' or 'off'"),
    ({"TESSERA_KMS_DATA_KEY_CACHE": "always"}, "TESSERA_KMS_DATA_KEY_CACHE must be"),
    ({"MINIO_KMS_KES_ENDPOINT": "https://127.0.0.1:1,https://127.0.0.1:2"},
     "KMS: no KES endpoint answered"),
], ids=["auto-without-kms", "no-key-name", "missing-cert", "bad-auto", "bad-cache",
        "kes-unreachable"])
def test_bad_kms_settings_are_one_line_at_start(cluster, tmp_path, overrides, expected):
    if overrides.get("MINIO_KMS_KES_ENDPOINT", "") is None:
        overrides = {**overrides, "MINIO_KMS_KES_CERT_FILE": None,
                     "MINIO_KMS_KES_KEY_FILE": None, "MINIO_KMS_KES_CAPATH": None,
                     "MINIO_KMS_KES_KEY_NAME": None}
    result = gateway_refusal(cluster, tmp_path / "gw", overrides)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.startswith("gateway:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr


def test_rotation_rewraps_keys_and_the_old_kes_key_can_go(cluster, client, tmp_path):
    kes_admin(cluster, "create_key", "rot-old")
    kes_admin(cluster, "create_key", "rot-new")
    client.create_bucket(Bucket="rot")
    objects = {}
    for i in range(12):
        data = os.urandom(1000 + i * 50_000)
        args = {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "rot-old"}
        if i % 3 == 0:
            args["SSEKMSEncryptionContext"] = "eyJ0ZWFtIjoiYSJ9"  # {"team":"a"}
        client.put_object(Bucket="rot", Key=f"kms-{i:02d}", Body=data, **args)
        objects[f"kms-{i:02d}"] = (data, {})
    for i in range(3):
        data = os.urandom(700)
        client.put_object(Bucket="rot", Key=f"s3-{i}", Body=data)  # auto-encryption: SSE-S3
        objects[f"s3-{i}"] = (data, {})
    client.put_object(Bucket="rot", Key="ssec", Body=b"c", **customer(KEY_C))
    objects["ssec"] = (b"c", customer(KEY_C))
    etags = {k: client.head_object(Bucket="rot", Key=k, **extra)["ETag"]
             for k, (_, extra) in objects.items()}
    root = str(cluster.root)
    first = run_rotate("--cluster", root, "--bucket", "rot", "--to-key", "rot-new",
                       "--max-objects", "5")
    assert first.returncode == 3, first.stderr + first.stdout
    assert "5 re-wrapped" in first.stdout and "stopped after --max-objects" in first.stdout
    second = run_rotate("--cluster", root, "--bucket", "rot", "--to-key", "rot-new")
    assert second.returncode == 0, second.stderr + second.stdout
    assert "resuming at rot/" in second.stdout
    assert "done: 15 re-wrapped, 1 skipped: SSE-C" in second.stdout
    kes_admin(cluster, "delete_key", "rot-old")
    for name in cluster.names("kes"):  # each KES server caches keys: make them forget
        cluster.restart(name)
    for key, (data, extra) in objects.items():
        got = client.get_object(Bucket="rot", Key=key, **extra)
        assert got["Body"].read() == data and got["ETag"] == etags[key], key
        if key.startswith("kms-"):
            assert got["SSEKMSKeyId"] == "arn:aws:kms:rot-new"
    with pytest.raises(ClientError) as exc:  # the old key is really gone
        client.put_object(Bucket="rot", Key="late", Body=b"x", ServerSideEncryption="aws:kms",
                          SSEKMSKeyId="rot-old")
    assert _error(exc) == ("KMS.NotFoundException", 400)
    again = run_rotate("--cluster", root, "--bucket", "rot", "--to-key", "rot-new")
    assert again.returncode == 0 and "already done" in again.stdout
    missing = run_rotate("--cluster", root, "--bucket", "rot", "--to-key", "no-such-key",
                         "--checkpoint", str(tmp_path / "cp.json"))
    assert missing.returncode == 1 and "does not exist" in missing.stderr


def test_a_missing_default_key_is_created_at_start(cluster, tmp_path):
    assert "fresh-default" not in kes_admin(cluster, "list_keys")
    with extra_gateway(cluster, tmp_path / "gw", {"MINIO_KMS_KES_KEY_NAME": "fresh-default"}) \
            as fresh:
        assert "fresh-default" in kes_admin(cluster, "list_keys")  # MinIO's start-up rule
        other = fresh.client()
        other.create_bucket(Bucket="fresh")
        put = other.put_object(Bucket="fresh", Key="k", Body=b"x")  # auto-encryption is on
        assert put["ServerSideEncryption"] == "AES256"
        assert other.get_object(Bucket="fresh", Key="k")["Body"].read() == b"x"
