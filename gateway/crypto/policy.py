"""Which encryption a write gets: bucket default encryption (PutBucketEncryption XML) and
MINIO_KMS_AUTO_ENCRYPTION, applied when the request itself carries no SSE headers.

Auto-encryption gives SSE-S3 with the KMS default key and is reported as `AES256` (MinIO's
code injects `aws:kms` while its docs say SSE-S3; we follow the docs). SSE-C requests are
never touched and never reach KES.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal
from xml.sax.saxutils import escape

from gateway.crypto.kms import valid_key_name
from gateway.crypto.sse import ARN_PREFIX
from gateway.objects.api import SSEParams
from gateway.objects.errors import InvalidBucketEncryption, KMSNotConfigured

__all__ = [
    "AUTO_ENCRYPTION_ENV",
    "BUCKET_ENCRYPTION_CONFIG",
    "BucketEncryption",
    "auto_encryption_from_env",
    "parse_bucket_encryption",
    "render_bucket_encryption",
    "resolve_write_sse",
]

AUTO_ENCRYPTION_ENV = "MINIO_KMS_AUTO_ENCRYPTION"
BUCKET_ENCRYPTION_CONFIG = "encryption"  # name for ObjectLayer.get/put_bucket_config
S3_NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MAX_XML_BYTES = 16 * 1024
_DOCTYPE = re.compile(rb"<!(DOCTYPE|ENTITY)", re.IGNORECASE)


@dataclass(frozen=True)
class BucketEncryption:
    """A bucket's default encryption: its one rule."""

    algorithm: Literal["AES256", "aws:kms"]
    kms_key_id: str | None = None  # aws:kms only; without the arn:aws:kms: prefix
    bucket_key_enabled: bool = False  # stored and echoed; every data key is per object anyway

    def sse_params(self) -> SSEParams:
        if self.algorithm == "AES256":
            return SSEParams(mode="SSE-S3")
        return SSEParams(mode="SSE-KMS", kms_key_id=self.kms_key_id)


def _malformed(why: str) -> InvalidBucketEncryption:
    return InvalidBucketEncryption(
        f"The XML you provided was not well-formed or did not validate: {why}"
    )


def _children(element: ET.Element, allowed: set[str]) -> dict[str, ET.Element]:
    """The element's children by local name; each allowed name at most once, no others."""
    found: dict[str, ET.Element] = {}
    for child in element:
        name = child.tag.rsplit("}", 1)[-1]
        if name not in allowed:
            raise _malformed(f"unexpected element {name}")
        if name in found:
            raise _malformed(f"{name} given more than once")
        found[name] = child
    return found


def parse_bucket_encryption(body: bytes) -> BucketEncryption:
    """Parses a PutBucketEncryption body; InvalidBucketEncryption (MalformedXML) if it is not
    exactly one valid rule."""
    if len(body) > MAX_XML_BYTES:
        raise _malformed("document too large")
    if _DOCTYPE.search(body):
        raise _malformed("document type declarations are not allowed")
    try:
        root = ET.fromstring(body)
    except ET.ParseError as exc:
        raise _malformed(str(exc)) from exc
    if root.tag.rsplit("}", 1)[-1] != "ServerSideEncryptionConfiguration":
        raise _malformed("root element must be ServerSideEncryptionConfiguration")
    rules = list(root)
    if len(rules) != 1 or rules[0].tag.rsplit("}", 1)[-1] != "Rule":
        raise _malformed("exactly one Rule is required")
    rule = _children(rules[0], {"ApplyServerSideEncryptionByDefault", "BucketKeyEnabled"})
    if "ApplyServerSideEncryptionByDefault" not in rule:
        raise _malformed("Rule needs ApplyServerSideEncryptionByDefault")
    default = _children(rule["ApplyServerSideEncryptionByDefault"],
                        {"SSEAlgorithm", "KMSMasterKeyID"})
    algorithm = (default["SSEAlgorithm"].text or "") if "SSEAlgorithm" in default else ""
    key_id = (default["KMSMasterKeyID"].text or "") if "KMSMasterKeyID" in default else None
    return BucketEncryption(
        algorithm=_algorithm(algorithm, key_id),
        kms_key_id=_master_key_id(key_id) if algorithm == "aws:kms" else None,
        bucket_key_enabled=_bool(rule.get("BucketKeyEnabled")),
    )


def _algorithm(algorithm: str, key_id: str | None) -> Literal["AES256", "aws:kms"]:
    if algorithm == "AES256":
        if key_id is not None:
            raise _malformed("AES256 does not take a KMSMasterKeyID")
        return "AES256"
    if algorithm == "aws:kms":
        return "aws:kms"
    raise _malformed(f"SSEAlgorithm must be AES256 or aws:kms, not {algorithm!r}")


def _master_key_id(key_id: str | None) -> str:
    if not key_id:
        raise _malformed("aws:kms needs a KMSMasterKeyID")
    if key_id != key_id.strip():
        raise _malformed("KMSMasterKeyID must not have leading or trailing spaces")
    name = key_id.removeprefix(ARN_PREFIX)
    if not valid_key_name(name):
        raise _malformed(f"KMSMasterKeyID {key_id!r} is not a valid key name")
    return name


def _bool(element: ET.Element | None) -> bool:
    if element is None:
        return False
    text = (element.text or "").strip()
    if text not in ("true", "false"):
        raise _malformed("BucketKeyEnabled must be true or false")
    return text == "true"


def render_bucket_encryption(config: BucketEncryption) -> bytes:
    """The GetBucketEncryption body for `config` (parses back to the same config)."""
    key = ""
    if config.kms_key_id:
        key = f"<KMSMasterKeyID>{escape(ARN_PREFIX + config.kms_key_id)}</KMSMasterKeyID>"
    bucket_key = "true" if config.bucket_key_enabled else "false"
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<ServerSideEncryptionConfiguration xmlns="{S3_NS}"><Rule>'
        f"<ApplyServerSideEncryptionByDefault><SSEAlgorithm>{config.algorithm}</SSEAlgorithm>"
        f"{key}</ApplyServerSideEncryptionByDefault>"
        f"<BucketKeyEnabled>{bucket_key}</BucketKeyEnabled>"
        "</Rule></ServerSideEncryptionConfiguration>"
    ).encode()


def resolve_write_sse(
    requested: SSEParams | None,
    *,
    bucket_default: BucketEncryption | None,
    auto_encryption: bool,
    kms_configured: bool,
) -> SSEParams | None:
    """The encryption a write (PUT, Copy destination, CreateMultipartUpload) gets.

    The request's own SSE headers win (SSE-C included, untouched); then the bucket default;
    then auto-encryption (SSE-S3). Raises KMSNotConfigured (501) if the result needs a KMS
    and none is configured.
    """
    sse = requested
    if sse is None and bucket_default is not None:
        sse = bucket_default.sse_params()
    if sse is None and auto_encryption:
        sse = SSEParams(mode="SSE-S3")
    if sse is not None and sse.mode != "SSE-C" and not kms_configured:
        raise KMSNotConfigured("Server side encryption specified but KMS is not configured")
    return sse


def auto_encryption_from_env(environ: Mapping[str, str], *, kms_configured: bool) -> bool:
    """MINIO_KMS_AUTO_ENCRYPTION (on/off, default off). Like MinIO, turning it on without a
    KMS is a startup error (ValueError)."""
    value = environ.get(AUTO_ENCRYPTION_ENV, "off").strip().lower()
    if value not in ("on", "off"):
        raise ValueError(f"{AUTO_ENCRYPTION_ENV} must be 'on' or 'off', not {value!r}")
    if value == "on" and not kms_configured:
        raise ValueError(f"{AUTO_ENCRYPTION_ENV}=on needs a KMS (MINIO_KMS_KES_ENDPOINT)")
    return value == "on"
