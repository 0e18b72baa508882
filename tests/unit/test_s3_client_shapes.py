"""Response shapes S3 clients parse strictly, checked in-process with the clients' own parsers
(s3cmd's ACL class, the minio SDK's XML readers): each test here failed before the gateway fix
it names. The end-to-end runs are tests/integration/test_clients_*.py."""

from __future__ import annotations

import asyncio

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from gateway.config import load_config
from gateway.objects.memory import MemoryObjectLayer
from gateway.s3.server import S3Application

ACCESS, SECRET = "unit-admin", "unit-secret-123"
HOST = "127.0.0.1:9000"


def _app() -> S3Application:
    config = load_config(["--listen", HOST, "--memory"],
                         {"MINIO_ROOT_USER": ACCESS, "MINIO_ROOT_PASSWORD": SECRET})
    return S3Application(config, MemoryObjectLayer())


def _call(app: S3Application, method: str, path: str, body: bytes = b"",
          headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One SigV4-signed request through the ASGI application; (status, headers, body)."""
    request = AWSRequest(method=method, url=f"http://{HOST}{path}", data=body,
                         headers={"Content-Length": str(len(body)), **(headers or {})})
    S3SigV4Auth(Credentials(ACCESS, SECRET), "s3", "us-east-1").add_auth(request)
    raw_path, _, query = path.partition("?")
    scope = {"type": "http", "method": method, "path": raw_path, "raw_path": raw_path.encode(),
             "query_string": query.encode(), "scheme": "http",
             "headers": [(k.lower().encode(), v.encode())
                         for k, v in request.prepare().headers.items()]
             + [(b"host", HOST.encode())]}
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive():
        return messages.pop(0) if messages else {"type": "http.disconnect"}

    async def send(message):
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    out = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
    return sent[0]["status"], out, b"".join(m.get("body", b"") for m in sent[1:])


def test_acl_grantee_carries_xsi_type_for_s3cmd():
    """s3cmd info/setacl read the grantee's xsi:type attribute unconditionally (KeyError)."""
    from S3.ACL import ACL

    app = _app()
    assert _call(app, "PUT", "/acl-bucket")[0] == 200
    assert _call(app, "PUT", "/acl-bucket/obj", b"x")[0] == 200
    for path in ("/acl-bucket?acl", "/acl-bucket/obj?acl"):
        status, _, body = _call(app, "GET", path)
        assert status == 200, body
        acl = ACL(body)
        assert [(g.xsi_type, g.permission) for g in acl.grantees] == [
            ("CanonicalUser", "FULL_CONTROL")]
        assert acl.getGrantList() == [{"grantee": ACCESS, "permission": "FULL_CONTROL"}]


def test_acls_granting_others_are_refused_not_dropped():
    """s3cmd --acl-public (x-amz-acl: public-read) was stored privately while s3cmd printed a
    public URL; rclone sends x-amz-acl: private on every write, which must keep working."""
    app = _app()
    public = {"x-amz-acl": "public-read"}
    status, _, body = _call(app, "PUT", "/acl-pub", headers=public)
    assert (status, b"<Code>AccessControlListNotSupported</Code>" in body) == (400, True)
    assert _call(app, "HEAD", "/acl-pub")[0] == 404
    assert _call(app, "PUT", "/acl-pub", headers={"x-amz-acl": "private"})[0] == 200
    for headers in (public, {"x-amz-grant-read": 'uri="http://acs.amazonaws.com/groups/'
                                                 'global/AllUsers"'}):
        status, _, body = _call(app, "PUT", "/acl-pub/obj", b"data", headers)
        assert (status, b"<Code>AccessControlListNotSupported</Code>" in body) == (400, True)
        status, _, body = _call(app, "POST", "/acl-pub/obj?uploads", headers=headers)
        assert status == 400, body
    assert _call(app, "HEAD", "/acl-pub/obj")[0] == 404
    for acl in ("private", "bucket-owner-full-control"):
        assert _call(app, "PUT", "/acl-pub/obj", b"data", {"x-amz-acl": acl})[0] == 200
