"""Bucket default encryption XML and the write-time resolution with auto-encryption."""

from __future__ import annotations

import pytest

from gateway.crypto.policy import (
    BucketEncryption,
    auto_encryption_from_env,
    parse_bucket_encryption,
    render_bucket_encryption,
    resolve_write_sse,
)
from gateway.objects.api import SSECustomerKey, SSEParams
from gateway.objects.errors import InvalidBucketEncryption, KMSNotConfigured

NS = 'xmlns="http://s3.amazonaws.com/doc/2006-03-01/"'


def xml(default: str, extra: str = "", *, ns: str = NS) -> bytes:
    return (
        f"<ServerSideEncryptionConfiguration {ns}><Rule>"
        f"<ApplyServerSideEncryptionByDefault>{default}</ApplyServerSideEncryptionByDefault>"
        f"{extra}</Rule></ServerSideEncryptionConfiguration>"
    ).encode()


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (xml("<SSEAlgorithm>AES256</SSEAlgorithm>"), BucketEncryption("AES256")),
        (xml("<SSEAlgorithm>AES256</SSEAlgorithm>", ns=""), BucketEncryption("AES256")),
        (xml("<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>k1</KMSMasterKeyID>"),
         BucketEncryption("aws:kms", "k1")),
        (xml("<SSEAlgorithm>aws:kms</SSEAlgorithm>"
             "<KMSMasterKeyID>arn:aws:kms:k1</KMSMasterKeyID>",
             "<BucketKeyEnabled>true</BucketKeyEnabled>"),
         BucketEncryption("aws:kms", "k1", bucket_key_enabled=True)),
        (b'<?xml version="1.0" encoding="UTF-8"?>\n'
         + xml("\n  <SSEAlgorithm>AES256</SSEAlgorithm>\n"), BucketEncryption("AES256")),
    ],
)
def test_good_bucket_encryption(body, expected):
    config = parse_bucket_encryption(body)
    assert config == expected
    assert parse_bucket_encryption(render_bucket_encryption(config)) == config


RULE = "<Rule><ApplyServerSideEncryptionByDefault><SSEAlgorithm>AES256</SSEAlgorithm>" \
       "</ApplyServerSideEncryptionByDefault></Rule>"


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not xml",
        b"<ServerSideEncryptionConfiguration>",
        f"<ServerSideEncryptionConfiguration {NS}></ServerSideEncryptionConfiguration>".encode(),
        f"<ServerSideEncryptionConfiguration>{RULE}{RULE}</ServerSideEncryptionConfiguration>"
        .encode(),
        f"<Other>{RULE}</Other>".encode(),
        xml("<SSEAlgorithm>AES256</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID>"),
        xml("<SSEAlgorithm>aws:kms</SSEAlgorithm>"),
        xml("<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID></KMSMasterKeyID>"),
        xml("<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID> k </KMSMasterKeyID>"),
        xml("<SSEAlgorithm>aws:kms</SSEAlgorithm><KMSMasterKeyID>a/b</KMSMasterKeyID>"),
        xml("<SSEAlgorithm>AES-256</SSEAlgorithm>"),
        xml("<SSEAlgorithm>aws:kms:dsse</SSEAlgorithm><KMSMasterKeyID>k</KMSMasterKeyID>"),
        xml(""),
        xml("<SSEAlgorithm>AES256</SSEAlgorithm><SSEAlgorithm>AES256</SSEAlgorithm>"),
        xml("<SSEAlgorithm>AES256</SSEAlgorithm><Extra/>"),
        xml("<SSEAlgorithm>AES256</SSEAlgorithm>", "<BucketKeyEnabled>yes</BucketKeyEnabled>"),
        b"<ServerSideEncryptionConfiguration><Rule><BucketKeyEnabled>true</BucketKeyEnabled>"
        b"</Rule></ServerSideEncryptionConfiguration>",
        b'<!DOCTYPE x [<!ENTITY a "aaaa">]>' + xml("<SSEAlgorithm>&a;</SSEAlgorithm>"),
        xml("<SSEAlgorithm>AES256</SSEAlgorithm>" + " " * 20_000),
    ],
)
def test_bad_bucket_encryption_is_malformed_xml(body):
    with pytest.raises(InvalidBucketEncryption):
        parse_bucket_encryption(body)


def test_render_carries_the_arn_prefix():
    body = render_bucket_encryption(BucketEncryption("aws:kms", "k1"))
    assert b"<KMSMasterKeyID>arn:aws:kms:k1</KMSMasterKeyID>" in body
    assert b"<SSEAlgorithm>aws:kms</SSEAlgorithm>" in body


CUSTOMER = SSEParams(mode="SSE-C", customer_key=SSECustomerKey(bytes(32), "x"))


@pytest.mark.parametrize(
    ("requested", "bucket_default", "auto", "expected"),
    [
        (None, None, False, None),
        (None, None, True, SSEParams("SSE-S3")),
        (None, BucketEncryption("AES256"), False, SSEParams("SSE-S3")),
        (None, BucketEncryption("aws:kms", "k1"), True, SSEParams("SSE-KMS", "k1")),
        (SSEParams("SSE-KMS", "k2"), BucketEncryption("AES256"), True, SSEParams("SSE-KMS", "k2")),
        (SSEParams("SSE-S3"), BucketEncryption("aws:kms", "k1"), False, SSEParams("SSE-S3")),
        (CUSTOMER, BucketEncryption("aws:kms", "k1"), True, CUSTOMER),
    ],
)
def test_resolution_order(requested, bucket_default, auto, expected):
    got = resolve_write_sse(requested, bucket_default=bucket_default, auto_encryption=auto,
                            kms_configured=True)
    assert got == expected


def test_sse_c_needs_no_kms_but_everything_else_does():
    assert resolve_write_sse(CUSTOMER, bucket_default=None, auto_encryption=False,
                             kms_configured=False) == CUSTOMER
    assert resolve_write_sse(None, bucket_default=None, auto_encryption=False,
                             kms_configured=False) is None
    for requested, default in ((SSEParams("SSE-S3"), None),
                               (None, BucketEncryption("AES256"))):
        with pytest.raises(KMSNotConfigured):
            resolve_write_sse(requested, bucket_default=default, auto_encryption=False,
                              kms_configured=False)


def test_auto_encryption_env():
    assert auto_encryption_from_env({}, kms_configured=False) is False
    assert auto_encryption_from_env({"MINIO_KMS_AUTO_ENCRYPTION": "on"}, kms_configured=True)
    assert not auto_encryption_from_env({"MINIO_KMS_AUTO_ENCRYPTION": "off"},
                                        kms_configured=True)
    with pytest.raises(ValueError):
        auto_encryption_from_env({"MINIO_KMS_AUTO_ENCRYPTION": "on"}, kms_configured=False)
    with pytest.raises(ValueError):
        auto_encryption_from_env({"MINIO_KMS_AUTO_ENCRYPTION": "yes"}, kms_configured=True)
