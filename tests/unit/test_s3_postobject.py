"""PostObject in-process: POST policy parsing and evaluation, the SigV4 and SigV2 form
signatures as boto3 makes them, and whole uploads through the ASGI application over the
in-memory object layer (stored bytes, refusals that store nothing)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import time
import xml.etree.ElementTree as ET

import boto3
import pytest
from botocore.config import Config

from gateway.config import load_config
from gateway.objects.memory import MemoryObjectLayer
from gateway.s3.errors import S3Error
from gateway.s3.postpolicy import parse_policy
from gateway.s3.server import S3Application
from gateway.s3.sigv2 import verify_v2_post
from gateway.s3.sigv4 import verify_post_policy

ACCESS, SECRET = "unit-admin", "unit-secret-123"
BOUNDARY = "unitBoundary42"


def encode(document: dict) -> str:
    return base64.b64encode(json.dumps(document).encode()).decode()


def policy_of(*conditions: object, expires_in: float = 3600):
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(time.time() + expires_in))
    return parse_policy(encode({"expiration": stamp, "conditions": list(conditions)}))


def code_of(fn, *args) -> str:
    with pytest.raises(S3Error) as err:
        fn(*args)
    return err.value.code + ": " + err.value.message


# ---- policy ----

def test_conditions_hold_and_fail() -> None:
    policy = policy_of({"bucket": "b"}, ["starts-with", "$key", "user/"],
                       ["eq", "$Content-Type", "text/plain"], ["content-length-range", 1, "10"])
    assert policy.length_range == (1, 10)
    now = time.time()
    policy.check({"key": "user/a", "content-type": "text/plain"}, "b", now)
    assert "Policy Condition failed" in code_of(
        policy.check, {"key": "other/a", "content-type": "text/plain"}, "b", now)
    assert code_of(policy.check, {"key": "user/a", "content-type": "text/plain"}, "c",
                   now).startswith("AccessDenied")
    assert "Extra input fields: x-amz-meta-a" in code_of(
        policy.check, {"key": "user/a", "content-type": "text/plain", "x-amz-meta-a": "1"},
        "b", now)
    # exempt: signature fields, x-ignore-*, SSE and checksum fields
    policy.check({"key": "user/a", "content-type": "text/plain", "policy": "p",
                  "x-amz-signature": "s", "x-ignore-me": "1",
                  "x-amz-server-side-encryption": "AES256"}, "b", now)


def test_content_type_starts_with_each_listed_type() -> None:
    policy = policy_of(["starts-with", "$content-type", "image/"])
    policy.check({"content-type": "image/png, image/jpeg"}, "b", time.time())
    with pytest.raises(S3Error):
        policy.check({"content-type": "image/png,text/html"}, "b", time.time())
    policy_of(["starts-with", "$key", ""]).check({"key": "anything"}, "b", time.time())


def test_expired_policy() -> None:
    policy = policy_of(expires_in=-1)
    assert "Policy expired" in code_of(policy.check, {}, "b", time.time())


@pytest.mark.parametrize("document", [
    "not base64!", base64.b64encode(b"[1]").decode(), encode({"conditions": []}),
    encode({"expiration": "tomorrow", "conditions": []}),
    encode({"expiration": "2030-01-01T00:00:00Z", "conditions": [["in", "$key", "a"]]}),
    encode({"expiration": "2030-01-01T00:00:00Z", "conditions": [["eq", "key", "a"]]}),
    encode({"expiration": "2030-01-01T00:00:00Z",
            "conditions": [["content-length-range", 10, 1]]}),
])
def test_malformed_policy_documents(document: str) -> None:
    assert code_of(parse_policy, document).startswith("InvalidPolicyDocument")


def _boto_post(conditions: list | None = None, fields: dict | None = None,
               secret: str = SECRET, signature_version: str = "s3v4") -> dict:
    client = boto3.session.Session().client(
        "s3", endpoint_url="http://127.0.0.1:9000", aws_access_key_id=ACCESS,
        aws_secret_access_key=secret, region_name="us-east-1",
        config=Config(signature_version=signature_version,
                      s3={"addressing_style": "path"}))
    return client.generate_presigned_post("bkt", "up/${filename}", Fields=fields,
                                          Conditions=conditions, ExpiresIn=600)["fields"]


def test_boto3_sigv4_form_signature_verifies() -> None:
    f = _boto_post()
    ctx = verify_post_policy(f["policy"], f["x-amz-credential"], f["x-amz-date"],
                             f["x-amz-signature"], {ACCESS: SECRET}, "us-east-1")
    assert ctx.access_key == ACCESS
    bad = _boto_post(secret="wrong")
    assert code_of(verify_post_policy, bad["policy"], bad["x-amz-credential"],
                   bad["x-amz-date"], bad["x-amz-signature"], {ACCESS: SECRET},
                   "us-east-1").startswith("SignatureDoesNotMatch")


def test_sigv2_form_signature_verifies() -> None:
    policy = encode({"expiration": "2030-01-01T00:00:00Z", "conditions": []})
    signature = base64.b64encode(hmac.new(SECRET.encode(), policy.encode(),
                                          hashlib.sha1).digest()).decode()
    assert verify_v2_post(policy, ACCESS, signature, {ACCESS: SECRET}).access_key == ACCESS
    assert code_of(verify_v2_post, policy, ACCESS, "x" + signature[1:],
                   {ACCESS: SECRET}).startswith("SignatureDoesNotMatch")


# ---- whole uploads through the application ----

def multipart(fields: dict[str, str], data: bytes, filename: str = "photo.jpg") -> bytes:
    out = []
    for name, value in fields.items():
        out.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n'
                   f"{value}\r\n".encode())
    out.append(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
               f'filename="{filename}"\r\nContent-Type: image/jpeg\r\n\r\n'.encode())
    out.append(data + f"\r\n--{BOUNDARY}--\r\n".encode())
    return b"".join(out)


def _app() -> tuple[S3Application, MemoryObjectLayer]:
    config = load_config(["--listen", "127.0.0.1:9000", "--memory"],
                         {"MINIO_ROOT_USER": ACCESS, "MINIO_ROOT_PASSWORD": SECRET})
    layer = MemoryObjectLayer()
    asyncio.run(layer.make_bucket("bkt"))
    return S3Application(config, layer), layer


def _post(app: S3Application, body: bytes, chunk: int = 65536, *, cut: int | None = None):
    pieces = [body[i:i + chunk] for i in range(0, len(body), chunk)]
    if cut is not None:
        pieces = pieces[:cut]
    messages = [{"type": "http.request", "body": p,
                 "more_body": cut is not None or i < len(pieces) - 1}
                for i, p in enumerate(pieces)]
    scope = {"type": "http", "method": "POST", "path": "/bkt", "raw_path": b"/bkt",
             "query_string": b"", "scheme": "http",
             "headers": [(b"host", b"127.0.0.1:9000"),
                         (b"content-type", f"multipart/form-data; boundary={BOUNDARY}".encode()),
                         (b"content-length", str(len(body)).encode())]}
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    headers = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], headers, b"".join(m.get("body", b"") for m in sent[1:])


def _keys(layer: MemoryObjectLayer) -> list[str]:
    return [o.key for o in asyncio.run(layer.list_objects("bkt")).objects]


def test_upload_round_trip_with_filename_and_201() -> None:
    app, layer = _app()
    data = os.urandom(200_000)
    fields = _boto_post(conditions=[{"success_action_status": "201"},
                                    ["starts-with", "$Content-Type", "image/"]],
                        fields={"success_action_status": "201", "Content-Type": "image/jpeg"})
    status, headers, body = _post(app, multipart(fields, data), chunk=9973)
    assert status == 201, body
    doc = ET.fromstring(body)
    assert doc.findtext("{http://s3.amazonaws.com/doc/2006-03-01/}Key") == "up/photo.jpg"
    assert headers["etag"] == f'"{hashlib.md5(data).hexdigest()}"'

    async def read() -> bytes:
        reader = await layer.open_object("bkt", "up/photo.jpg")
        try:
            return b"".join([c async for c in reader.stream(0, reader.info.size)])
        finally:
            await reader.close()

    assert asyncio.run(read()) == data


def test_too_large_too_small_extra_field_and_abort_store_nothing() -> None:
    app, layer = _app()
    fields = _boto_post(conditions=[["content-length-range", 10, 1000]])
    status, _, body = _post(app, multipart(fields, os.urandom(5000)), chunk=1024)
    assert (status, b"<Code>EntityTooLarge</Code>" in body) == (400, True)
    status, _, body = _post(app, multipart(fields, b"tiny"))
    assert (status, b"<Code>EntityTooSmall</Code>" in body) == (400, True)
    status, _, body = _post(app, multipart({**fields, "x-amz-meta-extra": "1"}, b"x" * 20))
    assert status == 403 and b"Extra input fields: x-amz-meta-extra" in body
    status, _, body = _post(app, multipart(fields, os.urandom(900)), chunk=100, cut=8)
    assert status == 400
    tampered = dict(fields, policy=encode({"expiration": "2099-01-01T00:00:00Z",
                                           "conditions": []}))
    status, _, body = _post(app, multipart(tampered, b"x" * 20))
    assert status == 403 and b"SignatureDoesNotMatch" in body
    assert _keys(layer) == []
    status, headers, _ = _post(app, multipart(fields, b"y" * 20))
    assert status == 204 and headers["location"].endswith("/bkt/up/photo.jpg")
    assert _keys(layer) == ["up/photo.jpg"]


def test_redirect_carries_bucket_key_etag() -> None:
    app, _ = _app()
    fields = _boto_post(conditions=[["starts-with", "$success_action_redirect", "https://"]],
                        fields={"success_action_redirect": "https://app.example/done?x=1"})
    status, headers, _ = _post(app, multipart(fields, b"hello"))
    assert status == 303
    assert headers["location"].startswith("https://app.example/done?x=1&bucket=bkt&key=up")
    assert "etag=%22" in headers["location"]
