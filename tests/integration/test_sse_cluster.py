"""Server-side encryption end to end on a real cluster (6 nodes, a gateway, 2 KES servers)
through boto3 and the aws cli: every mode round trips with ranges across package and block
boundaries, no plaintext reaches a node's disk, SSE-C keys are enforced, a forged shard never
yields altered plaintext, bucket default encryption, copies, and each error S3 clients expect."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from botocore.exceptions import ClientError

from cluster.launcher import Cluster
from tests.conftest import running_cluster
from tests.integration.s3_gateway import S3Endpoint, raw_request, signed_headers
from tests.integration.sse_helpers import (
    customer,
    endpoint,
    files_containing,
    forge_shard_block,
    marked,
    ssec_headers,
)

PACKAGE = 64 * 1024
KEY_C = os.urandom(32)
CONTEXT = {"project": "tessera", "tier": "<gold>"}
MODES = {
    "SSE-S3": {"ServerSideEncryption": "AES256"},
    "SSE-KMS": {"ServerSideEncryption": "aws:kms", "SSEKMSKeyId": "minio-default-key",
                "SSEKMSEncryptionContext": base64.b64encode(json.dumps(CONTEXT).encode())
                .decode()},
    "SSE-C": customer(KEY_C),
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("sse"), nodes=6, gateways=1, kes=2) as c:
        yield c


@pytest.fixture(scope="module")
def s3(cluster: Cluster) -> S3Endpoint:
    return endpoint(cluster)


@pytest.fixture(scope="module")
def client(s3: S3Endpoint):
    """HTTPS, so that SSE-C is allowed."""
    return s3.client(https=True)


def _bucket(client, name: str) -> str:
    client.create_bucket(Bucket=name)
    return name


def _read_keys(mode: str) -> dict:
    return customer(KEY_C) if mode == "SSE-C" else {}


def _error(exc: pytest.ExceptionInfo[ClientError]) -> tuple[str, int]:
    response = exc.value.response
    return response["Error"]["Code"], response["ResponseMetadata"]["HTTPStatusCode"]


def _check_headers(head: dict, mode: str) -> None:
    if mode == "SSE-S3":
        assert head["ServerSideEncryption"] == "AES256"
    elif mode == "SSE-KMS":
        assert head["ServerSideEncryption"] == "aws:kms"
        assert head["SSEKMSKeyId"] == "arn:aws:kms:minio-default-key"
    else:
        assert "ServerSideEncryption" not in head
        assert head["SSECustomerAlgorithm"] == "AES256"
        assert head["SSECustomerKeyMD5"] == base64.b64encode(hashlib.md5(KEY_C).digest()).decode()


def _check_ranges(client, bucket: str, key: str, data: bytes, mode: str,
                  edges: list[int]) -> None:
    def one(edge: int) -> tuple[int, bool]:
        start = max(edge - 3, 0)
        end = min(edge + 3, len(data) - 1)
        got = client.get_object(Bucket=bucket, Key=key, Range=f"bytes={start}-{end}",
                                **_read_keys(mode))["Body"].read()
        return edge, got == data[start:end + 1]

    with ThreadPoolExecutor(6) as pool:
        bad = [edge for edge, ok in pool.map(one, edges) if not ok]
    assert bad == []


@pytest.mark.parametrize("mode", list(MODES))
def test_single_part_round_trip_with_ranges_at_every_package_boundary(client, mode):
    bucket = _bucket(client, f"single-{mode.lower()}")
    data = os.urandom(2 * 1024 * 1024 + 4321)  # three erasure blocks, 33 packages
    put = client.put_object(Bucket=bucket, Key="obj", Body=data, **MODES[mode])
    _check_headers(put, mode)
    head = client.head_object(Bucket=bucket, Key="obj", **_read_keys(mode))
    _check_headers(head, mode)
    assert head["ContentLength"] == len(data) and head["ETag"] == put["ETag"]
    md5 = hashlib.md5(data).hexdigest()
    assert (put["ETag"] == f'"{md5}"') == (mode == "SSE-S3")  # others: random, not the MD5
    got = client.get_object(Bucket=bucket, Key="obj", **_read_keys(mode))
    assert got["Body"].read() == data
    _check_headers(got, mode)
    if mode == "SSE-KMS":
        context = json.loads(base64.b64decode(got["ResponseMetadata"]["HTTPHeaders"]
                                              ["x-amz-server-side-encryption-context"]))
        assert context == CONTEXT
    _check_ranges(client, bucket, "obj", data, mode,
                  [*range(0, len(data), PACKAGE), len(data) - 1])
    listed = client.list_objects_v2(Bucket=bucket)["Contents"]
    assert [(o["Key"], o["Size"], o["ETag"]) for o in listed] == \
        [("obj", len(data), put["ETag"])]


CLI_SSE = {
    "SSE-S3": ["--sse", "AES256"],
    "SSE-KMS": ["--sse", "aws:kms", "--sse-kms-key-id", "minio-default-key"],
}


@pytest.mark.parametrize("mode", ["SSE-S3", "SSE-KMS", "SSE-C"])
def test_aws_cli_multipart_round_trip_and_ranges_across_parts(s3, client, tmp_path, mode):
    bucket = _bucket(client, f"multi-{mode.lower()}")
    data = os.urandom(9 * 1024 * 1024 + 777)  # aws cli: parts of 8 MiB and 1 MiB
    source, back = tmp_path / "source", tmp_path / "back"
    source.write_bytes(data)
    if mode == "SSE-C":
        key_file = tmp_path / "key"
        key_file.write_bytes(KEY_C)
        options = ["--sse-c", "AES256", "--sse-c-key", f"fileb://{key_file}"]
    else:
        options = CLI_SSE[mode]
    https = mode == "SSE-C"
    s3.aws("s3", "cp", "--no-progress", str(source), f"s3://{bucket}/mp", *options, https=https)
    s3.aws("s3", "cp", "--no-progress", f"s3://{bucket}/mp", str(back),
           *(options if mode == "SSE-C" else []), https=https)
    assert back.read_bytes() == data
    head = client.head_object(Bucket=bucket, Key="mp", **_read_keys(mode))
    _check_headers(head, mode)
    assert head["ETag"].endswith('-2"') and head["ContentLength"] == len(data)
    part = 8 * 1024 * 1024
    edges = [part - 1, part, part + 1, part + PACKAGE, len(data) - 1]
    edges += list(range(0, part, 1024 * 1024 + 5 * PACKAGE))  # sampled: the unit tests do all
    _check_ranges(client, bucket, "mp", data, mode, edges)
    whole = client.get_object(Bucket=bucket, Key="mp", PartNumber=2, **_read_keys(mode))
    assert whole["Body"].read() == data[part:]


def test_no_plaintext_reaches_any_node_disk(cluster, client):
    secret = b"TSR-ENC!"  # every 64-byte window of the encrypted objects holds this marker
    control = b"TSR-PLN!"
    bucket = _bucket(client, "scan")
    for mode, args in MODES.items():
        for size in (10_000, 1024 * 1024 + 100):  # inline, and shard files
            client.put_object(Bucket=bucket, Key=f"{mode}-{size}", Body=marked(secret, size),
                              **args)
        upload = client.create_multipart_upload(Bucket=bucket, Key=f"{mode}-mp", **args)
        parts = []
        for number, size in ((1, 5 * 1024 * 1024), (2, 100_000)):
            etag = client.upload_part(Bucket=bucket, Key=f"{mode}-mp", PartNumber=number,
                                      UploadId=upload["UploadId"],
                                      Body=marked(secret, size, seed=number),
                                      **_read_keys(mode))["ETag"]
            parts.append({"PartNumber": number, "ETag": etag})
        client.complete_multipart_upload(Bucket=bucket, Key=f"{mode}-mp",
                                         UploadId=upload["UploadId"],
                                         MultipartUpload={"Parts": parts})
    plain = _bucket(client, "scan-control")
    client.put_object(Bucket=plain, Key="plain", Body=marked(control, 1024 * 1024 + 100))
    client.put_object(Bucket=plain, Key="small", Body=marked(control, 10_000))
    assert files_containing(cluster, control), "the scanner must see unencrypted data"
    assert files_containing(cluster, secret) == []
    back = client.get_object(Bucket=bucket, Key="SSE-C-mp", **customer(KEY_C))["Body"].read()
    assert back[:8] == secret and len(back) == 5 * 1024 * 1024 + 100_000


def test_ssec_object_needs_its_own_key(s3, client):
    bucket = _bucket(client, "ssec-keys")
    client.put_object(Bucket=bucket, Key="c", Body=b"customer data", **customer(KEY_C))
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="c")
    assert _error(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="c", **customer(os.urandom(32)))
    assert _error(exc) == ("AccessDenied", 403)
    with pytest.raises(ClientError) as exc:
        client.head_object(Bucket=bucket, Key="c", **customer(os.urandom(32)))
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    got = client.get_object(Bucket=bucket, Key="c", **customer(KEY_C))["Body"].read()
    assert got == b"customer data"
    assert client.get_object_acl(Bucket=bucket, Key="c")["Grants"]  # needs no key


def _raw_put(s3: S3Endpoint, path: str, headers: dict[str, str], *, https: bool = True):
    body = b"must not be stored"
    url = f"{s3.https_url if https else s3.url}{path}"
    signed = signed_headers(s3, "PUT", url, payload_hash=hashlib.sha256(body).hexdigest(),
                            headers={"Content-Length": str(len(body)), **headers})
    return raw_request(s3, "PUT", path, headers=signed, body=body, https=https)


@pytest.mark.parametrize(("headers", "https", "code", "status"), [
    (ssec_headers(KEY_C), False, b"InvalidRequest", 400),  # SSE-C over plain HTTP
    (ssec_headers(KEY_C, md5_of=b"something else"), True, b"InvalidArgument", 400),
    (ssec_headers(KEY_C[:16]), True, b"InvalidArgument", 400),  # a 128-bit key
    ({"x-amz-server-side-encryption": "AES-256"}, False, b"InvalidArgument", 400),
    ({"x-amz-server-side-encryption": "aws:kms",
      "x-amz-server-side-encryption-aws-kms-key-id": "no-such-key"}, False,
     b"KMS.NotFoundException", 400),
    ({**ssec_headers(KEY_C), "x-amz-server-side-encryption": "AES256"}, True,
     b"InvalidArgument", 400),
], ids=["ssec-over-http", "key-md5-mismatch", "short-key", "unknown-algorithm",
        "unknown-kms-key", "ssec-with-sse-s3"])
def test_bad_sse_requests_get_s3_errors_and_store_nothing(s3, client, bad_bucket, headers,
                                                         https, code, status):
    key = f"k-{os.urandom(4).hex()}"
    resp = _raw_put(s3, f"/{bad_bucket}/{key}", headers, https=https)
    assert resp.status == status, resp.body
    assert b"<Code>" + code + b"</Code>" in resp.body
    with pytest.raises(ClientError) as exc:
        client.head_object(Bucket=bad_bucket, Key=key)
    assert exc.value.response["ResponseMetadata"]["HTTPStatusCode"] == 404


@pytest.fixture(scope="module")
def bad_bucket(client) -> str:
    return _bucket(client, "bad-sse")


def test_sse_headers_on_a_read_are_bad_requests(client):
    bucket = _bucket(client, "read-headers")
    client.put_object(Bucket=bucket, Key="s3", Body=b"x", ServerSideEncryption="AES256")
    client.put_object(Bucket=bucket, Key="plain", Body=b"x")
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="plain", **customer(KEY_C))
    assert _error(exc) == ("InvalidRequest", 400)
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="s3", **customer(KEY_C))
    assert _error(exc) == ("InvalidRequest", 400)


def test_forged_shard_never_yields_altered_plaintext(cluster, s3, client):
    bucket = _bucket(client, "forged")
    data = os.urandom(3 * 1024 * 1024)
    client.put_object(Bucket=bucket, Key="obj", Body=data, ServerSideEncryption="AES256")
    node = forge_shard_block(cluster, bucket, "obj", shard_index=0, block=1)
    assert client.get_object(Bucket=bucket, Key="obj")["Body"].read() == data
    assert f"rebuilt from other shards (forged by: {node})" in Path(s3.log).read_text()
    start = 1024 * 1024 + 12_345  # inside the forged block
    got = client.get_object(Bucket=bucket, Key="obj", Range=f"bytes={start}-{start + 99}")
    assert got["Body"].read() == data[start:start + 100]


def test_bucket_default_encryption(client):
    bucket = _bucket(client, "defaults")
    with pytest.raises(ClientError) as exc:
        client.get_bucket_encryption(Bucket=bucket)
    assert _error(exc) == ("ServerSideEncryptionConfigurationNotFoundError", 404)
    rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
    client.put_bucket_encryption(Bucket=bucket,
                                 ServerSideEncryptionConfiguration={"Rules": [rule]})
    got = client.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]
    assert got["Rules"][0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    assert client.put_object(Bucket=bucket, Key="a", Body=b"a")["ServerSideEncryption"] == \
        "AES256"
    own = client.put_object(Bucket=bucket, Key="c", Body=b"c", **customer(KEY_C))
    assert "ServerSideEncryption" not in own and own["SSECustomerAlgorithm"] == "AES256"
    kms_rule = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                       "KMSMasterKeyID": "minio-default-key"}}
    client.put_bucket_encryption(Bucket=bucket,
                                 ServerSideEncryptionConfiguration={"Rules": [kms_rule]})
    put = client.put_object(Bucket=bucket, Key="k", Body=b"k")
    assert (put["ServerSideEncryption"], put["SSEKMSKeyId"]) == \
        ("aws:kms", "arn:aws:kms:minio-default-key")
    upload = client.create_multipart_upload(Bucket=bucket, Key="mp")
    assert upload["ServerSideEncryption"] == "aws:kms"
    client.abort_multipart_upload(Bucket=bucket, Key="mp", UploadId=upload["UploadId"])
    missing = {"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms",
                                                      "KMSMasterKeyID": "no-such-key"}}
    with pytest.raises(ClientError) as exc:
        client.put_bucket_encryption(Bucket=bucket,
                                     ServerSideEncryptionConfiguration={"Rules": [missing]})
    assert _error(exc) == ("KMS.NotFoundException", 400)
    two = {"Rules": [rule, rule]}
    with pytest.raises(ClientError) as exc:
        client.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration=two)
    assert _error(exc) == ("MalformedXML", 400)
    client.delete_bucket_encryption(Bucket=bucket)
    with pytest.raises(ClientError) as exc:
        client.get_bucket_encryption(Bucket=bucket)
    assert _error(exc)[0] == "ServerSideEncryptionConfigurationNotFoundError"
    assert "ServerSideEncryption" not in client.put_object(Bucket=bucket, Key="p", Body=b"p")
    assert client.head_object(Bucket=bucket, Key="a")["ServerSideEncryption"] == "AES256"


def test_copies_change_and_rekey_encryption(client):
    bucket = _bucket(client, "copies")
    data = os.urandom(300_000)
    client.put_object(Bucket=bucket, Key="src", Body=data, **customer(KEY_C))
    with pytest.raises(ClientError) as exc:  # the copy source's key is missing
        client.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src")
    assert _error(exc) == ("InvalidArgument", 400)
    copied = client.copy_object(Bucket=bucket, Key="dst", CopySource=f"{bucket}/src",
                                ServerSideEncryption="aws:kms",
                                **customer(KEY_C, copy_source=True))
    assert copied["ServerSideEncryption"] == "aws:kms"
    assert client.get_object(Bucket=bucket, Key="dst")["Body"].read() == data
    new_key = os.urandom(32)
    rekeyed = client.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src",
                                 **customer(KEY_C, copy_source=True), **customer(new_key))
    assert rekeyed["SSECustomerAlgorithm"] == "AES256"
    with pytest.raises(ClientError) as exc:
        client.get_object(Bucket=bucket, Key="src", **customer(KEY_C))
    assert _error(exc) == ("AccessDenied", 403)
    assert client.get_object(Bucket=bucket, Key="src",
                             **customer(new_key))["Body"].read() == data
    to_s3 = client.copy_object(Bucket=bucket, Key="src", CopySource=f"{bucket}/src",
                               ServerSideEncryption="AES256",
                               **customer(new_key, copy_source=True))
    assert to_s3["ServerSideEncryption"] == "AES256"
    assert client.get_object(Bucket=bucket, Key="src")["Body"].read() == data
    upload = client.create_multipart_upload(Bucket=bucket, Key="assembled",
                                            ServerSideEncryption="AES256")
    part = client.upload_part_copy(Bucket=bucket, Key="assembled", PartNumber=1,
                                   UploadId=upload["UploadId"], CopySource=f"{bucket}/dst",
                                   CopySourceRange="bytes=1000-1999")
    client.complete_multipart_upload(
        Bucket=bucket, Key="assembled", UploadId=upload["UploadId"],
        MultipartUpload={"Parts": [{"PartNumber": 1,
                                    "ETag": part["CopyPartResult"]["ETag"]}]})
    got = client.get_object(Bucket=bucket, Key="assembled")
    assert got["Body"].read() == data[1000:2000] and got["ServerSideEncryption"] == "AES256"


def test_no_kes_answers_503_and_recent_reads_survive(cluster, client):
    bucket = _bucket(client, "kes-down")
    client.put_object(Bucket=bucket, Key="warm", Body=b"read just now",
                      ServerSideEncryption="AES256")
    assert client.get_object(Bucket=bucket, Key="warm")["Body"].read() == b"read just now"
    for name in cluster.names("kes"):
        cluster.kill(name)
    try:
        with pytest.raises(ClientError) as exc:
            client.put_object(Bucket=bucket, Key="cold", Body=b"x", ServerSideEncryption="AES256")
        assert _error(exc) == ("ServiceUnavailable", 503)
        assert "KES" in exc.value.response["Error"]["Message"]
        # the unsealed data key of a recent read is still cached: a short KES outage is survived
        assert client.get_object(Bucket=bucket, Key="warm")["Body"].read() == b"read just now"
        assert client.put_object(Bucket=bucket, Key="c", Body=b"c", **customer(KEY_C))
    finally:
        for name in cluster.names("kes"):
            cluster.start(name)
    with pytest.raises(ClientError) as exc:
        client.head_object(Bucket=bucket, Key="cold")
    assert _error(exc)[1] == 404
    assert client.put_object(Bucket=bucket, Key="cold", Body=b"x", ServerSideEncryption="AES256")


def test_gateway_log_holds_no_key_material(s3):
    text = Path(s3.log).read_bytes()
    assert base64.b64encode(KEY_C) not in text and KEY_C not in text
