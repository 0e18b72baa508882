"""The minio Python SDK (`minio.Minio`) against a real cluster: buckets, PUTs of known and
unknown length (streaming multipart), fput/fget, ranged GETs, stat, listings, copies, bulk
delete, presigned URLs fetched with a plain HTTP client, SSE-S3 / SSE-KMS / SSE-C, bucket
default encryption, and a wrong secret."""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator
from datetime import timedelta
from urllib.parse import urlsplit

import pytest
import urllib3
from minio import Minio
from minio.commonconfig import REPLACE, CopySource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error
from minio.sse import SseCustomerKey, SseKMS, SseS3
from minio.sseconfig import Rule, SSEConfig

from cluster.launcher import Cluster
from tests.integration.client_helpers import KMS_KEY, MiB, client_cluster, md5_hex
from tests.integration.s3_gateway import S3Endpoint
from tests.integration.sse_helpers import endpoint

PART = 5 * MiB  # the SDK's minimum part size


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with client_cluster(tmp_path_factory.mktemp("minio-cluster")) as c:
        yield c


@pytest.fixture(scope="module")
def s3(cluster: Cluster) -> S3Endpoint:
    return endpoint(cluster)


@pytest.fixture(scope="module")
def pool(s3: S3Endpoint) -> Iterator[urllib3.PoolManager]:
    """One HTTP pool for the SDK and for plain requests: the cluster CA, bounded timeouts,
    no retries (a retry would hide a failed first attempt)."""
    manager = urllib3.PoolManager(cert_reqs="CERT_REQUIRED", ca_certs=str(s3.ca),
                                  timeout=urllib3.Timeout(connect=10, read=60), retries=False)
    yield manager
    manager.clear()


def _minio(s3: S3Endpoint, pool: urllib3.PoolManager, *, https: bool = False,
           secret: str | None = None) -> Minio:
    # no region: the SDK asks GetBucketLocation, as it does against any server
    host = urlsplit(s3.https_url if https else s3.url).netloc
    return Minio(host, s3.access_key, secret or s3.secret_key, secure=https, http_client=pool)


@pytest.fixture(scope="module")
def mc(s3: S3Endpoint, pool: urllib3.PoolManager) -> Minio:
    return _minio(s3, pool)


@pytest.fixture(scope="module")
def mcs(s3: S3Endpoint, pool: urllib3.PoolManager) -> Minio:
    """Over HTTPS (SSE-C needs it)."""
    return _minio(s3, pool, https=True)


def _code(exc: pytest.ExceptionInfo[S3Error]) -> tuple[str, int]:
    return exc.value.code, exc.value.response.status


def test_buckets(mc: Minio):
    mc.make_bucket("mc-buckets")
    assert mc.bucket_exists("mc-buckets")
    assert not mc.bucket_exists("mc-never-made")
    assert "mc-buckets" in [b.name for b in mc.list_buckets()]
    with pytest.raises(S3Error) as exc:
        mc.make_bucket("mc-buckets")
    assert _code(exc) == ("BucketAlreadyOwnedByYou", 409)
    mc.put_object("mc-buckets", "k", io.BytesIO(b"x"), 1)
    with pytest.raises(S3Error) as exc:
        mc.remove_bucket("mc-buckets")
    assert _code(exc) == ("BucketNotEmpty", 409)
    mc.remove_object("mc-buckets", "k")
    mc.remove_bucket("mc-buckets")
    assert not mc.bucket_exists("mc-buckets")


def test_put_known_and_unknown_length_and_ranges(mc: Minio):
    mc.make_bucket("mc-put")
    small = os.urandom(300_000)
    result = mc.put_object("mc-put", "small", io.BytesIO(small), len(small),
                           content_type="text/x-tessera", metadata={"Colour": "blue"})
    assert result.etag == md5_hex(small)
    big = os.urandom(2 * PART + 12_345)
    # length -1: the SDK streams PART-sized parts of a multipart upload
    result = mc.put_object("mc-put", "streamed", io.BytesIO(big), -1, part_size=PART)
    assert result.etag.endswith("-3")

    stat = mc.stat_object("mc-put", "small")
    assert (stat.size, stat.etag, stat.content_type) == (len(small), md5_hex(small),
                                                         "text/x-tessera")
    assert stat.metadata["x-amz-meta-colour"] == "blue"
    assert mc.stat_object("mc-put", "streamed").size == len(big)
    # MinIO's listing extension (metadata=true): content type and x-amz-meta-* per object
    listed = {o.object_name: o.metadata for o in mc.list_objects("mc-put", include_user_meta=True)}
    assert listed["small"] == {"content-type": "text/x-tessera", "X-Amz-Meta-Colour": "blue"}
    assert listed["streamed"] == {"content-type": "application/octet-stream"}

    with mc.get_object("mc-put", "streamed") as response:
        assert hashlib.sha256(response.read()).digest() == hashlib.sha256(big).digest()
    with mc.get_object("mc-put", "streamed", offset=PART - 10, length=20) as response:
        assert response.read() == big[PART - 10:PART + 10]  # across the part boundary
    with mc.get_object("mc-put", "small", offset=299_000) as response:
        assert response.read() == small[299_000:]
    with pytest.raises(S3Error) as exc:
        mc.stat_object("mc-put", "absent")
    assert exc.value.code == "NoSuchKey"


def test_fput_and_fget_of_a_multipart_file(mc: Minio, tmp_path):
    data = os.urandom(2 * PART + 1)
    source = tmp_path / "source.bin"
    source.write_bytes(data)
    mc.make_bucket("mc-files")
    result = mc.fput_object("mc-files", "dir/file.bin", str(source), part_size=PART)
    assert result.etag.endswith("-3")
    target = tmp_path / "target.bin"
    mc.fget_object("mc-files", "dir/file.bin", str(target))
    assert md5_hex(target.read_bytes()) == md5_hex(data)


def test_listing(mc: Minio):
    mc.make_bucket("mc-list")
    names = {"a.txt": 1, "dir/b.txt": 22, "dir/sub/c.txt": 333, "dir2/d.txt": 4444,
             "sp ace/é+&.txt": 5}
    for name, size in names.items():
        mc.put_object("mc-list", name, io.BytesIO(b"x" * size), size)
    everything = {o.object_name: (o.size, o.etag, o.is_dir)
                  for o in mc.list_objects("mc-list", recursive=True)}
    assert everything == {n: (s, md5_hex(b"x" * s), False) for n, s in names.items()}
    top = [(o.object_name, o.is_dir) for o in mc.list_objects("mc-list")]
    assert top == [("a.txt", False), ("dir/", True), ("dir2/", True), ("sp ace/", True)]
    under = [o.object_name for o in mc.list_objects("mc-list", prefix="dir/")]
    assert under == ["dir/b.txt", "dir/sub/"]
    assert [o.object_name for o in mc.list_objects("mc-list", prefix="dir", recursive=True)] \
        == ["dir/b.txt", "dir/sub/c.txt", "dir2/d.txt"]
    after = [o.object_name for o in mc.list_objects("mc-list", recursive=True,
                                                    start_after="dir/sub/c.txt")]
    assert after == ["dir2/d.txt", "sp ace/é+&.txt"]
    v1 = [o.object_name for o in mc.list_objects("mc-list", recursive=True, use_api_v1=True)]
    assert v1 == sorted(names)
    # ListObjectVersions: the bucket is unversioned, so each key has one version, "null"
    versions = [(o.object_name, o.size, o.version_id, o.is_latest)
                for o in mc.list_objects("mc-list", recursive=True, include_version=True)]
    assert versions == [(n, names[n], "null", "true") for n in sorted(names)]
    with mc.get_object("mc-list", "dir/b.txt", version_id="null") as response:
        assert response.read() == b"x" * 22


def test_copy_and_bulk_remove(mc: Minio):
    mc.make_bucket("mc-copy")
    data = os.urandom(100_000)
    mc.put_object("mc-copy", "src", io.BytesIO(data), len(data), metadata={"Kind": "source"})
    copied = mc.copy_object("mc-copy", "same-meta", CopySource("mc-copy", "src"))
    assert copied.etag == md5_hex(data)
    mc.copy_object("mc-copy", "new-meta", CopySource("mc-copy", "src"),
                   metadata={"Kind": "copy"}, metadata_directive=REPLACE)
    assert mc.stat_object("mc-copy", "same-meta").metadata["x-amz-meta-kind"] == "source"
    assert mc.stat_object("mc-copy", "new-meta").metadata["x-amz-meta-kind"] == "copy"
    with mc.get_object("mc-copy", "new-meta") as response:
        assert response.read() == data

    doomed = ["src", "same-meta", "new-meta", "never-existed"]
    errors = list(mc.remove_objects("mc-copy", [DeleteObject(n) for n in doomed]))
    assert errors == []  # deleting an absent key succeeds, as in S3
    assert list(mc.list_objects("mc-copy", recursive=True)) == []


def test_presigned_urls_with_a_plain_http_client(mc: Minio, pool: urllib3.PoolManager):
    mc.make_bucket("mc-presign")
    data = os.urandom(20_000)
    mc.put_object("mc-presign", "obj", io.BytesIO(data), len(data))
    url = mc.presigned_get_object("mc-presign", "obj", expires=timedelta(minutes=5))
    response = pool.request("GET", url)
    assert (response.status, response.data) == (200, data)
    url = mc.get_presigned_url(
        "GET", "mc-presign", "obj", expires=timedelta(minutes=5),
        response_headers={"response-content-type": "application/json",
                          "response-content-disposition": 'attachment; filename="o.json"'})
    response = pool.request("GET", url)
    assert response.headers["content-type"] == "application/json"
    assert response.headers["content-disposition"] == 'attachment; filename="o.json"'
    assert pool.request("GET", url.replace("obj", "other")).status == 403

    url = mc.presigned_put_object("mc-presign", "uploaded", expires=timedelta(minutes=5))
    response = pool.request("PUT", url, body=data[:5000])
    assert response.status == 200
    assert response.headers["etag"].strip('"') == md5_hex(data[:5000])
    with mc.get_object("mc-presign", "uploaded") as got:
        assert got.read() == data[:5000]


def test_sse_s3_and_kms(mc: Minio):
    mc.make_bucket("mc-sse")
    data = os.urandom(150_000)
    result = mc.put_object("mc-sse", "s3", io.BytesIO(data), len(data), sse=SseS3())
    assert result.etag == md5_hex(data)  # SSE-S3 ETags are the plaintext MD5, as on AWS
    context = {"project": "tessera", "tier": "gold"}
    mc.put_object("mc-sse", "kms", io.BytesIO(data), len(data), sse=SseKMS(KMS_KEY, context))
    mc.put_object("mc-sse", "kms-streamed", io.BytesIO(data * 70), -1, part_size=PART,
                  sse=SseKMS(KMS_KEY, context))

    assert mc.stat_object("mc-sse", "s3").metadata["x-amz-server-side-encryption"] == "AES256"
    for key in ("kms", "kms-streamed"):
        headers = mc.stat_object("mc-sse", key).metadata
        assert headers["x-amz-server-side-encryption"] == "aws:kms"
        assert headers["x-amz-server-side-encryption-aws-kms-key-id"] == \
            f"arn:aws:kms:{KMS_KEY}"
    listed = {o.object_name: o.metadata["X-Amz-Server-Side-Encryption"]
              for o in mc.list_objects("mc-sse", include_user_meta=True)}
    assert listed == {"s3": "AES256", "kms": "aws:kms", "kms-streamed": "aws:kms"}
    for key, expected in (("s3", data), ("kms", data), ("kms-streamed", data * 70)):
        with mc.get_object("mc-sse", key) as response:
            assert md5_hex(response.read()) == md5_hex(expected)
    with mc.get_object("mc-sse", "kms-streamed", offset=PART - 3, length=6) as response:
        assert response.read() == (data * 70)[PART - 3:PART + 3]


def test_sse_c_over_https(mc: Minio, mcs: Minio):
    mcs.make_bucket("mc-ssec")
    key, other = SseCustomerKey(os.urandom(32)), SseCustomerKey(os.urandom(32))
    data = os.urandom(2 * PART + 99)
    mcs.put_object("mc-ssec", "single", io.BytesIO(data[:70_000]), 70_000, sse=key)
    mcs.put_object("mc-ssec", "streamed", io.BytesIO(data), -1, part_size=PART, sse=key)

    stat = mcs.stat_object("mc-ssec", "streamed", ssec=key)
    assert stat.size == len(data)
    assert stat.metadata["x-amz-server-side-encryption-customer-algorithm"] == "AES256"
    with mcs.get_object("mc-ssec", "single", ssec=key) as response:
        assert response.read() == data[:70_000]
    with mcs.get_object("mc-ssec", "streamed", ssec=key, offset=PART - 5, length=10) as got:
        assert got.read() == data[PART - 5:PART + 5]

    with pytest.raises(S3Error) as exc:
        mcs.get_object("mc-ssec", "single", ssec=other)
    assert _code(exc) == ("AccessDenied", 403)
    with pytest.raises(S3Error) as exc:
        mcs.get_object("mc-ssec", "single")
    assert _code(exc) == ("InvalidRequest", 400)
    with pytest.raises(S3Error) as exc:  # a customer key never travels in clear
        mc.put_object("mc-ssec", "plain-http", io.BytesIO(b"x"), 1, sse=key)
    assert _code(exc) == ("InvalidRequest", 400)

    # copy out of SSE-C into SSE-KMS, then read it without any key
    mcs.copy_object("mc-ssec", "as-kms", CopySource("mc-ssec", "single", ssec=key),
                    sse=SseKMS(KMS_KEY, {}))
    with mcs.get_object("mc-ssec", "as-kms") as response:
        assert response.read() == data[:70_000]


def test_bucket_default_encryption(mc: Minio):
    mc.make_bucket("mc-default")
    assert mc.get_bucket_encryption("mc-default") is None
    mc.set_bucket_encryption("mc-default", SSEConfig(Rule.new_sse_s3_rule()))
    assert mc.get_bucket_encryption("mc-default").rule.sse_algorithm == "AES256"
    mc.put_object("mc-default", "by-default", io.BytesIO(b"abc"), 3)
    stat = mc.stat_object("mc-default", "by-default")
    assert stat.metadata["x-amz-server-side-encryption"] == "AES256"

    mc.set_bucket_encryption("mc-default", SSEConfig(Rule.new_sse_kms_rule(KMS_KEY)))
    rule = mc.get_bucket_encryption("mc-default").rule
    assert (rule.sse_algorithm, rule.kms_master_key_id) == ("aws:kms", f"arn:aws:kms:{KMS_KEY}")
    mc.put_object("mc-default", "by-kms-default", io.BytesIO(b"abc"), 3)
    headers = mc.stat_object("mc-default", "by-kms-default").metadata
    assert headers["x-amz-server-side-encryption"] == "aws:kms"

    mc.delete_bucket_encryption("mc-default")
    assert mc.get_bucket_encryption("mc-default") is None
    mc.put_object("mc-default", "plain", io.BytesIO(b"abc"), 3)
    assert "x-amz-server-side-encryption" not in mc.stat_object("mc-default", "plain").metadata
    with mc.get_object("mc-default", "by-kms-default") as response:
        assert response.read() == b"abc"


def test_wrong_secret(s3: S3Endpoint, pool: urllib3.PoolManager):
    bad = _minio(s3, pool, secret="not-the-secret-0000")
    with pytest.raises(S3Error) as exc:
        bad.list_buckets()
    assert _code(exc) == ("SignatureDoesNotMatch", 403)
