"""SSE request headers -> SSEParams or the exact error, per operation; response headers."""

from __future__ import annotations

import base64
import hashlib
import json

import pytest

from gateway.crypto.sse import SSEOperation as Op
from gateway.crypto.sse import parse_sse_request, sse_response_headers
from gateway.objects.api import EncryptionInfo, SSECustomerKey
from gateway.objects.errors import (
    KMSKeyNotFound,
    SSEBadRequest,
    SSECInsecureConnection,
    SSEInvalidArgument,
    SSEInvalidRequest,
    SSENotImplemented,
)

KEY = bytes(range(32))
KEY_B64 = base64.b64encode(KEY).decode()
MD5_B64 = base64.b64encode(hashlib.md5(KEY).digest()).decode()
SSEC = {
    "X-Amz-Server-Side-Encryption-Customer-Algorithm": "AES256",
    "X-Amz-Server-Side-Encryption-Customer-Key": KEY_B64,
    "X-Amz-Server-Side-Encryption-Customer-Key-MD5": MD5_B64,
}
COPY_SSEC = {k.replace("X-Amz-", "X-Amz-Copy-Source-"): v for k, v in SSEC.items()}
S3 = {"X-Amz-Server-Side-Encryption": "AES256"}
KMS = {"X-Amz-Server-Side-Encryption": "aws:kms"}


def ctx(obj) -> str:
    return base64.b64encode(json.dumps(obj).encode()).decode()


def parse(headers, op=Op.PUT_OBJECT, secure=True):
    return parse_sse_request(headers, op, secure=secure)


# --- accepted ----------------------------------------------------------------------------

def test_no_headers_means_no_sse():
    for op in Op:
        request = parse({"Content-Type": "text/plain"}, op, secure=False)
        assert request.sse is None and request.customer_key is None


def test_sse_s3():
    assert parse(S3).sse.mode == "SSE-S3"
    assert parse({"x-amz-server-side-encryption": "AES256"}).sse.mode == "SSE-S3"


@pytest.mark.parametrize(
    ("key_header", "expected"),
    [(None, None), ("", None), ("my-key", "my-key"), ("arn:aws:kms:my-key", "my-key")],
)
def test_sse_kms_key_id(key_header, expected):
    headers = dict(KMS)
    if key_header is not None:
        headers["X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"] = key_header
    sse = parse(headers, Op.CREATE_MULTIPART_UPLOAD).sse
    assert (sse.mode, sse.kms_key_id, sse.kms_context) == ("SSE-KMS", expected, None)


def test_sse_kms_context():
    headers = {**KMS, "X-Amz-Server-Side-Encryption-Context": ctx({"team": "a", "b": "c"})}
    assert parse(headers).sse.kms_context == {"team": "a", "b": "c"}


def test_sse_c_on_writes_and_reads():
    sse = parse(SSEC).sse
    assert sse.mode == "SSE-C" and sse.customer_key == SSECustomerKey(KEY, MD5_B64)
    for op in (Op.GET_OBJECT, Op.HEAD_OBJECT, Op.UPLOAD_PART, Op.COMPLETE_MULTIPART_UPLOAD):
        request = parse(SSEC, op)
        assert request.sse is None and request.customer_key.key == KEY


def test_copy_carries_source_and_destination_keys():
    other = bytes(32)
    dest = {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key": base64.b64encode(other).decode(),
        "x-amz-server-side-encryption-customer-key-md5":
            base64.b64encode(hashlib.md5(other).digest()).decode(),
    }
    request = parse({**COPY_SSEC, **dest}, Op.COPY_OBJECT)
    assert request.copy_source_key.key == KEY and request.sse.customer_key.key == other
    request = parse({**COPY_SSEC, **KMS}, Op.COPY_OBJECT)
    assert request.copy_source_key.key == KEY and request.sse.mode == "SSE-KMS"
    request = parse({**COPY_SSEC, **dest}, Op.UPLOAD_PART_COPY)
    assert request.copy_source_key.key == KEY and request.customer_key.key == other


def test_upload_part_ignores_sse_s3_headers():
    assert parse(S3, Op.UPLOAD_PART).sse is None


# --- the error table ---------------------------------------------------------------------

def without(headers, name):
    return {k: v for k, v in headers.items() if k != name}


ALG = "X-Amz-Server-Side-Encryption-Customer-Algorithm"
CKEY = "X-Amz-Server-Side-Encryption-Customer-Key"
CMD5 = "X-Amz-Server-Side-Encryption-Customer-Key-MD5"
KID = "X-Amz-Server-Side-Encryption-Aws-Kms-Key-Id"
KCTX = "X-Amz-Server-Side-Encryption-Context"
SHORT = base64.b64encode(b"k" * 16).decode()

ERROR_TABLE = [
    # (case, headers, operation, secure, error)
    ("SSE-C over http", SSEC, Op.PUT_OBJECT, False, SSECInsecureConnection),
    ("SSE-C over http on HEAD", SSEC, Op.HEAD_OBJECT, False, SSECInsecureConnection),
    ("copy SSE-C over http", COPY_SSEC, Op.COPY_OBJECT, False, SSECInsecureConnection),
    ("algorithm not AES256", {**SSEC, ALG: "AES128"}, Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("algorithm missing", without(SSEC, ALG), Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("key missing", without(SSEC, CKEY), Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("key MD5 missing", without(SSEC, CMD5), Op.GET_OBJECT, True, SSEInvalidArgument),
    ("key MD5 mismatch", {**SSEC, CMD5: base64.b64encode(b"0" * 16).decode()},
     Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("key MD5 not base64", {**SSEC, CMD5: "!!"}, Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("key not base64 (MinIO: 403)", {**SSEC, CKEY: "not base64!"}, Op.PUT_OBJECT, True,
     SSEInvalidArgument),
    ("key 128 bits (MinIO: 403)", {**SSEC, CKEY: SHORT}, Op.PUT_OBJECT, True,
     SSEInvalidArgument),
    ("SSE-C with SSE-S3", {**SSEC, **S3}, Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("SSE-C with SSE-KMS", {**SSEC, **KMS}, Op.CREATE_MULTIPART_UPLOAD, True,
     SSEInvalidArgument),
    ("SSE-C with KMS key id", {**SSEC, KID: "k"}, Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("copy-source SSE-C on PutObject", COPY_SSEC, Op.PUT_OBJECT, True, SSEInvalidRequest),
    ("copy-source SSE-C on UploadPart", COPY_SSEC, Op.UPLOAD_PART, True, SSEInvalidRequest),
    ("KMS key id with spaces", {**KMS, KID: " k "}, Op.PUT_OBJECT, True, SSEInvalidRequest),
    ("unknown SSE value (MinIO: SSE-S3)", {"X-Amz-Server-Side-Encryption": "AES-256"},
     Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("lower-case aes256", {"X-Amz-Server-Side-Encryption": "aes256"}, Op.PUT_OBJECT, True,
     SSEInvalidArgument),
    ("empty SSE value", {"X-Amz-Server-Side-Encryption": ""}, Op.COPY_OBJECT, True,
     SSEInvalidArgument),
    ("DSSE-KMS", {"X-Amz-Server-Side-Encryption": "aws:kms:dsse"}, Op.PUT_OBJECT, True,
     SSENotImplemented),
    ("key id without aws:kms", {KID: "k"}, Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("context without aws:kms", {KCTX: ctx({"a": "b"})}, Op.PUT_OBJECT, True,
     SSEInvalidArgument),
    ("key id with AES256", {**S3, KID: "k"}, Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("context not base64", {**KMS, KCTX: "%%%"}, Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("context not JSON", {**KMS, KCTX: base64.b64encode(b"{x").decode()}, Op.PUT_OBJECT,
     True, SSEInvalidArgument),
    ("context a list", {**KMS, KCTX: ctx(["a"])}, Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("context with a number", {**KMS, KCTX: ctx({"a": 1})}, Op.PUT_OBJECT, True,
     SSEInvalidArgument),
    ("context with a lone surrogate", {**KMS, KCTX: base64.b64encode(b'{"a":"\\ud800"}')
     .decode()}, Op.PUT_OBJECT, True, SSEInvalidArgument),
    ("KMS key name KES cannot hold", {**KMS, KID: "alias/../x"}, Op.PUT_OBJECT, True,
     KMSKeyNotFound),
    ("arn prefix only", {**KMS, KID: "arn:aws:kms:"}, Op.PUT_OBJECT, True, KMSKeyNotFound),
    ("SSE-S3 header on GET", S3, Op.GET_OBJECT, True, SSEBadRequest),
    ("SSE-KMS headers on HEAD", {**KMS, KID: "k"}, Op.HEAD_OBJECT, True, SSEBadRequest),
    ("KMS key id on GET", {KID: "k"}, Op.GET_OBJECT, True, SSEBadRequest),
    ("SSE-KMS on UploadPartCopy", KMS, Op.UPLOAD_PART_COPY, True, SSENotImplemented),
    ("KMS key id on UploadPartCopy", {KID: "k"}, Op.UPLOAD_PART_COPY, True,
     SSENotImplemented),
]


@pytest.mark.parametrize(
    ("headers", "op", "secure", "error"),
    [row[1:] for row in ERROR_TABLE],
    ids=[row[0] for row in ERROR_TABLE],
)
def test_error_table(headers, op, secure, error):
    with pytest.raises(error) as info:
        parse(headers, op, secure)
    assert type(info.value) is error
    assert KEY_B64 not in str(info.value)  # never echo the customer key


# --- response headers --------------------------------------------------------------------

def test_response_headers():
    assert sse_response_headers(None) == {}
    assert sse_response_headers(EncryptionInfo("SSE-S3")) == {
        "x-amz-server-side-encryption": "AES256"}
    assert sse_response_headers(EncryptionInfo("SSE-KMS", "k1", "e30=")) == {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:k1",
        "x-amz-server-side-encryption-context": "e30=",
    }
    assert sse_response_headers(EncryptionInfo("SSE-KMS", "k1")) == {
        "x-amz-server-side-encryption": "aws:kms",
        "x-amz-server-side-encryption-aws-kms-key-id": "arn:aws:kms:k1",
    }
    assert sse_response_headers(EncryptionInfo("SSE-C"), SSECustomerKey(KEY, MD5_B64)) == {
        "x-amz-server-side-encryption-customer-algorithm": "AES256",
        "x-amz-server-side-encryption-customer-key-md5": MD5_B64,
    }
