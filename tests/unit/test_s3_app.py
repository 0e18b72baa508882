"""The ASGI application in-process over an object layer that fails on purpose: every
object-layer error maps to its S3 code, an unexpected exception is a logged InternalError
carrying the request id, and digests fail before anything becomes visible."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import xml.etree.ElementTree as ET

import pytest
from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.config import load_config
from gateway.objects import errors as oe
from gateway.objects.memory import MemoryObjectLayer
from gateway.s3.server import S3Application

ACCESS, SECRET = "unit-admin", "unit-secret-123"


def _config():
    return load_config(["--listen", "127.0.0.1:9000", "--memory"],
                       {"MINIO_ROOT_USER": ACCESS, "MINIO_ROOT_PASSWORD": SECRET})


def _call(app, method: str, path: str, body: bytes = b"", headers: dict | None = None,
          chunks: int = 1, disconnect_after: int | None = None):
    url = f"http://127.0.0.1:9000{path}"
    request = AWSRequest(method=method, url=url, data=body,
                         headers={"Content-Length": str(len(body)), **(headers or {})})
    S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(request)
    prepared = request.prepare()
    raw_path, _, query = path.partition("?")
    scope = {"type": "http", "method": method, "path": raw_path, "raw_path": raw_path.encode(),
             "query_string": query.encode(), "scheme": "http",
             "headers": [(k.lower().encode(), v.encode()) for k, v in prepared.headers.items()]
             + [(b"host", b"127.0.0.1:9000")]}
    size = max(1, -(-len(body) // chunks))
    pieces = [body[i:i + size] for i in range(0, len(body), size)] or [b""]
    messages = [{"type": "http.request", "body": p, "more_body": i < len(pieces) - 1}
                for i, p in enumerate(pieces)]
    if disconnect_after is not None:
        messages = [*messages[:disconnect_after], {"type": "http.disconnect"}]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    start = sent[0]
    headers_out = {k.decode(): v.decode() for k, v in start["headers"]}
    return start["status"], headers_out, b"".join(m.get("body", b"") for m in sent[1:])


class _Failing(MemoryObjectLayer):
    def __init__(self, error: Exception):
        super().__init__()
        self.error = error

    async def list_buckets(self):
        raise self.error


@pytest.mark.parametrize(("error", "code", "status"), [
    (oe.InsufficientReadQuorum("2 of 6"), "SlowDown", 503),
    (oe.InsufficientWriteQuorum("3 of 6"), "SlowDown", 503),
    (oe.KMSUnavailable("no KES"), "ServiceUnavailable", 503),
    (oe.KMSNotConfigured(), "NotImplemented", 501),
    (oe.KMSKeyNotFound("k"), "KMS.NotFoundException", 400),
    (oe.SSECKeyMismatch(), "AccessDenied", 403),
    (oe.SSECKeyRequired(), "InvalidRequest", 400),
    (oe.StorageFull(), "SlowDown", 503),
    (oe.BucketNotFound("b"), "NoSuchBucket", 404),
    (oe.ObjectLayerError("odd"), "InternalError", 500),
])
def test_object_layer_errors_map_to_s3(error, code, status):
    got_status, headers, body = _call(S3Application(_config(), _Failing(error)), "GET", "/")
    assert got_status == status
    doc = ET.fromstring(body)
    assert doc.findtext("Code") == code
    assert doc.findtext("RequestId") == headers["x-amz-request-id"]


def test_unexpected_exception_is_logged_internal_error(caplog):
    app = S3Application(_config(), _Failing(ZeroDivisionError("boom")))
    with caplog.at_level(logging.ERROR, logger="tessera.gateway"):
        status, headers, body = _call(app, "GET", "/")
    assert status == 500
    doc = ET.fromstring(body)
    assert doc.findtext("Code") == "InternalError"
    request_id = headers["x-amz-request-id"]
    assert doc.findtext("RequestId") == request_id
    assert "boom" not in body.decode()  # no internals leak to the client
    assert any(request_id in r.getMessage() and r.exc_info for r in caplog.records)


def test_bad_content_md5_leaves_nothing_and_old_version_survives():
    layer = MemoryObjectLayer()
    app = S3Application(_config(), layer)
    assert _call(app, "PUT", "/unit-bucket")[0] == 200
    assert _call(app, "PUT", "/unit-bucket/k", b"first")[0] == 200
    import base64

    wrong = base64.b64encode(hashlib.md5(b"nope").digest()).decode()
    status, _, body = _call(app, "PUT", "/unit-bucket/k", b"second" * 100_000,
                            headers={"Content-MD5": wrong}, chunks=7)
    assert status == 400
    assert b"BadDigest" in body
    status, _, body = _call(app, "GET", "/unit-bucket/k")
    assert (status, body) == (200, b"first")


def test_disconnect_mid_body_stores_nothing():
    layer = MemoryObjectLayer()
    app = S3Application(_config(), layer)
    _call(app, "PUT", "/unit-bucket")
    data = b"x" * 3_000_000
    _call(app, "PUT", "/unit-bucket/gone", data, chunks=30, disconnect_after=10)
    status, _, _ = _call(app, "HEAD", "/unit-bucket/gone")
    assert status == 404


def test_object_lock_is_not_implemented():
    app = S3Application(_config(), MemoryObjectLayer())
    status, _, _body = _call(app, "PUT", "/locked-bucket",
                            headers={"x-amz-bucket-object-lock-enabled": "true"})
    assert status == 501
    assert _call(app, "HEAD", "/locked-bucket")[0] == 404
