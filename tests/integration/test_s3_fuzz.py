"""Property-based: malformed requests (headers, query strings, XML bodies, chunk framing,
signatures) thrown at a running gateway. Every answer must be a well-formed S3 XML error or a
success, never a 500, and an object outside the fuzzed bucket must stay exactly as stored."""

from __future__ import annotations

import hashlib
import xml.etree.ElementTree as ET
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.integration.s3_gateway import S3Endpoint, raw_request, s3, signed_headers

__all__ = ["s3"]

PLAYGROUND = "fuzz-playground"
PROTECTED = "fuzz-protected"
PROTECTED_KEY = "keep/me.bin"
PROTECTED_DATA = b"precious bytes " * 100

TEXT = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=40)
JUNK = st.one_of(TEXT, st.sampled_from(["", "-1", "0", "99999999999999999999", "abc", "%",
                                        "bytes=", "bytes=9-1", "*", '"', "\t", "1e3", "2",
                                        "Sun, 06 Nov 1994 08:49:37 GMT", "ENABLED", "url",
                                        "REPLACE", "COPY", "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
                                        "STREAMING-UNSIGNED-PAYLOAD-TRAILER", "UNSIGNED-PAYLOAD",
                                        "x-amz-checksum-crc32", "CRC32", "aws-chunked"]))
QUERY_NAMES = ["list-type", "prefix", "delimiter", "max-keys", "marker", "continuation-token",
               "start-after", "encoding-type", "uploads", "uploadId", "partNumber", "delete",
               "versioning", "location", "acl", "tagging", "policy", "encryption", "versionId",
               "part-number-marker", "max-parts", "key-marker", "upload-id-marker",
               "response-content-type", "X-Amz-Signature", "X-Amz-Credential", "X-Amz-Date",
               "X-Amz-Expires", "X-Amz-Algorithm", "x-id", "max-uploads", "fetch-owner"]
HEADER_NAMES = ["range", "if-match", "if-none-match", "if-modified-since", "if-unmodified-since",
                "content-md5", "x-amz-checksum-crc32", "x-amz-checksum-sha256",
                "x-amz-checksum-foo", "x-amz-sdk-checksum-algorithm", "x-amz-trailer",
                "x-amz-decoded-content-length", "content-encoding", "x-amz-copy-source",
                "x-amz-copy-source-range", "x-amz-metadata-directive", "x-amz-meta-fuzz",
                "content-type", "x-amz-checksum-mode", "x-amz-copy-source-if-match",
                "x-amz-server-side-encryption", "expect", "x-amz-storage-class", "x-amz-tagging",
                "x-amz-tagging-directive"]
XML_ROOTS = ["Delete", "CompleteMultipartUpload", "CreateBucketConfiguration", "Tagging",
             "Other"]
CHILDREN = ["Object", "Key", "Quiet", "Part", "PartNumber", "ETag", "LocationConstraint",
            "ChecksumCRC32", "TagSet", "Tag", "Value"]


@st.composite
def xml_bodies(draw) -> bytes:
    root = draw(st.sampled_from(XML_ROOTS))
    inner = "".join(
        f"<{c}>{quote(draw(TEXT), safe=' ')}</{c}>"
        for c in draw(st.lists(st.sampled_from(CHILDREN), max_size=6)))
    doc = f"<{root}>{inner}</{root}>"
    if draw(st.booleans()):
        doc = doc[: draw(st.integers(0, len(doc)))]  # cut it anywhere
    return doc.encode()


@st.composite
def chunked_bodies(draw) -> bytes:
    pieces = []
    for _ in range(draw(st.integers(0, 4))):
        data = draw(st.binary(max_size=64))
        size = draw(st.one_of(st.just(f"{len(data):x}"), st.sampled_from(["zz", "-1", "ffff"])))
        sig = draw(st.sampled_from(["", ";chunk-signature=" + "0" * 64, ";garbage"]))
        pieces.append(f"{size}{sig}\r\n".encode() + data + draw(st.sampled_from([b"\r\n", b""])))
    pieces.append(draw(st.sampled_from([b"0\r\n\r\n", b"0\r\n", b"", b"0\r\nx-amz-checksum-crc32:"
                                        b"AAAAAA==\r\n\r\n", b"0;chunk-signature=1\r\n"])))
    return b"".join(pieces)


@st.composite
def requests(draw) -> dict:
    bucket = draw(st.sampled_from([PLAYGROUND] * 5 + [PROTECTED] * 2 + [
        "", "ab", "Bad_Name", "no-such-bucket-fuzz"]))
    key = draw(st.one_of(st.none(), st.sampled_from(["k", "dir/k", PROTECTED_KEY, "a" * 1100]),
                         TEXT.filter(bool)))
    path = "/" + bucket + ("/" + quote(key, safe="/") if key and bucket else "")
    if draw(st.integers(0, 4)) == 0:
        path += draw(st.sampled_from(["%ZZ", "%C3%28", "/..", "//x", "%00"]))
    query = draw(st.lists(st.tuples(st.sampled_from(QUERY_NAMES), JUNK), max_size=4))
    headers = draw(st.dictionaries(st.sampled_from(HEADER_NAMES), JUNK, max_size=5))
    body = draw(st.one_of(st.just(b""), st.binary(max_size=200), xml_bodies(),
                          chunked_bodies()))
    return {
        "method": draw(st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "PATCH",
                                        "OPTIONS"])),
        "path": path or "/",
        "query": "&".join(f"{quote(k)}={quote(v, safe='')}" if v else k for k, v in query),
        "headers": headers,
        "body": body,
        "auth": draw(st.sampled_from(["valid", "valid", "valid", "wrong-secret", "junk",
                                      "none"])),
        "payload": draw(st.sampled_from(["sha256", "unsigned", "wrong-sha256", "streaming",
                                         "unsigned-trailer", "junk"])),
    }


def _payload_hash(kind: str, body: bytes) -> str:
    return {"sha256": hashlib.sha256(body).hexdigest(), "unsigned": "UNSIGNED-PAYLOAD",
            "wrong-sha256": hashlib.sha256(body + b"!").hexdigest(),
            "streaming": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
            "unsigned-trailer": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
            "junk": "not-a-hash"}[kind]


def _send(s3: S3Endpoint, spec: dict):
    target = spec["path"] + (f"?{spec['query']}" if spec["query"] else "")
    headers = {k: v for k, v in spec["headers"].items() if k != "expect"}
    headers["Content-Length"] = str(len(spec["body"]))
    auth = spec["auth"]
    # a validly signed request may do anything to the playground, nothing to the protected
    # bucket: there the signature is always wrong, so nothing may change
    if auth == "valid" and PROTECTED in spec["path"]:
        auth = "wrong-secret"
    # and the playground itself stays, so that later examples reach the object handlers
    if auth == "valid" and spec["method"] == "DELETE" and spec["path"].rstrip("/") == (
            "/" + PLAYGROUND):
        auth = "wrong-secret"
    if auth in ("valid", "wrong-secret"):
        headers = signed_headers(s3, spec["method"], s3.url + target, headers=headers,
                                 payload_hash=_payload_hash(spec["payload"], spec["body"]),
                                 secret="wrong-secret-value" if auth == "wrong-secret" else None)
    else:
        headers["Host"] = s3.url.split("//", 1)[1]
        if auth == "junk":
            headers["Authorization"] = "AWS4-HMAC-SHA256 Credential=x/y, Signature=zz"
    return raw_request(s3, spec["method"], target, headers=headers, body=spec["body"])


@pytest.fixture(scope="module")
def stage(s3: S3Endpoint):
    client = s3.client()
    for bucket in (PLAYGROUND, PROTECTED):
        client.create_bucket(Bucket=bucket)
    client.put_object(Bucket=PROTECTED, Key=PROTECTED_KEY, Body=PROTECTED_DATA)
    return s3, client


def _assert_well_formed(resp, spec: dict) -> None:
    assert resp.status < 500 or resp.status in (501, 503), (resp.status, spec, resp.body)
    request_id = resp.headers.get("x-amz-request-id")
    assert request_id, spec
    if resp.status >= 400 and spec["method"] != "HEAD":
        doc = ET.fromstring(resp.body)
        assert doc.tag == "Error", resp.body
        assert doc.findtext("Code"), resp.body
        assert doc.findtext("RequestId") == request_id


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(spec=requests())
def test_malformed_requests_get_s3_errors_and_change_nothing(stage, spec):
    endpoint, client = stage
    resp = _send(endpoint, spec)
    _assert_well_formed(resp, spec)
    got = client.get_object(Bucket=PROTECTED, Key=PROTECTED_KEY)
    assert got["Body"].read() == PROTECTED_DATA
    listed = client.list_objects_v2(Bucket=PROTECTED)
    assert [o["Key"] for o in listed["Contents"]] == [PROTECTED_KEY]
