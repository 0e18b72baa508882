"""AWS Signature Version 4 for S3: the Authorization header, presigned query strings, clock skew,
and the per-chunk and trailer signatures that `aws-chunked` bodies carry.

`verify_request` checks a request's signature (not its payload: the body is checked while it
streams, see `gateway/s3/body.py`) and returns the `SigningContext` the chunk decoder continues
the signature chain with.
"""

from __future__ import annotations

import calendar
import hashlib
import hmac
import re
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from functools import lru_cache
from urllib.parse import quote, unquote

from .errors import S3Error

__all__ = [
    "ALGORITHM",
    "EMPTY_SHA256",
    "MAX_PRESIGN_EXPIRES",
    "MAX_SKEW_SECONDS",
    "SigningContext",
    "canonical_query",
    "canonical_request",
    "chunk_signature",
    "signing_key",
    "trailer_signature",
    "verify_post_policy",
    "verify_request",
]

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_SKEW_SECONDS = 15 * 60
MAX_PRESIGN_EXPIRES = 7 * 24 * 3600
AMZ_DATE_FORMAT = "%Y%m%dT%H%M%SZ"

_AUTH_RE = re.compile(
    r"^AWS4-HMAC-SHA256\s+Credential\s*=\s*(?P<cred>[^,\s]+)\s*,\s*"
    r"SignedHeaders\s*=\s*(?P<signed>[^,\s]+)\s*,\s*Signature\s*=\s*(?P<sig>[0-9a-fA-F]+)\s*$"
)


@dataclass(frozen=True)
class SigningContext:
    """A verified request's signing material, for continuing the chunk signature chain."""

    access_key: str
    key: bytes = field(repr=False)  # the derived signing key (never the secret itself)
    amz_date: str  # 20250101T000000Z
    scope: str  # 20250101/us-east-1/s3/aws4_request
    seed_signature: str  # the request's own signature: the first link of the chain
    payload_hash: str  # x-amz-content-sha256 as signed (hex, UNSIGNED-PAYLOAD, STREAMING-...)
    presigned: bool = False


@lru_cache(maxsize=256)
def signing_key(secret: str, date: str, region: str, service: str = "s3") -> bytes:
    k = hmac.new(("AWS4" + secret).encode(), date.encode(), hashlib.sha256).digest()
    for part in (region, service, "aws4_request"):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    return k


def _uri_encode(text: str, safe: str) -> str:
    return quote(text, safe=safe)


def canonical_uri(raw_path: bytes) -> str:
    """S3 signs the path as sent, encoded exactly once (no normalisation of '//' or '.')."""
    try:
        path = unquote(raw_path.decode("latin-1"), encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise S3Error("InvalidURI") from None
    return _uri_encode(path, safe="/~") or "/"


def canonical_query(query: Sequence[tuple[str, str]], *, drop: str | None = None) -> str:
    pairs = sorted((_uri_encode(k, "-_.~"), _uri_encode(v, "-_.~"))
                   for k, v in query if k != drop)
    return "&".join(f"{k}={v}" for k, v in pairs)


def _canonical_headers(headers: Sequence[tuple[str, str]], signed: Sequence[str]) -> str:
    values: dict[str, list[str]] = {}
    for name, value in headers:
        if name in signed:
            values.setdefault(name, []).append(" ".join(value.split()))
    lines = []
    for name in signed:
        if name not in values:
            raise S3Error("AccessDenied", f"Signed header {name!r} is missing from the request.")
        lines.append(f"{name}:{','.join(values[name])}\n")
    return "".join(lines)


def canonical_request(method: str, raw_path: bytes, query: Sequence[tuple[str, str]],
                      headers: Sequence[tuple[str, str]], signed: Sequence[str],
                      payload_hash: str, *, drop_query: str | None = None) -> str:
    return "\n".join([
        method,
        canonical_uri(raw_path),
        canonical_query(query, drop=drop_query),
        _canonical_headers(headers, signed),
        ";".join(signed),
        payload_hash,
    ])


def _string_to_sign(amz_date: str, scope: str, canonical: str) -> str:
    digest = hashlib.sha256(canonical.encode("utf-8", "surrogateescape")).hexdigest()
    return f"{ALGORITHM}\n{amz_date}\n{scope}\n{digest}"


def _sign(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode(), hashlib.sha256).hexdigest()


def chunk_signature(ctx: SigningContext, previous: str, chunk_sha256_hex: str) -> str:
    """The signature of one aws-chunked chunk, chained on the previous one."""
    text = (f"AWS4-HMAC-SHA256-PAYLOAD\n{ctx.amz_date}\n{ctx.scope}\n{previous}\n"
            f"{EMPTY_SHA256}\n{chunk_sha256_hex}")
    return _sign(ctx.key, text)


def trailer_signature(ctx: SigningContext, previous: str, trailer: bytes) -> str:
    """The signature over the trailing headers (each `name:value\\n`), chained on the last
    chunk's signature."""
    text = (f"AWS4-HMAC-SHA256-TRAILER\n{ctx.amz_date}\n{ctx.scope}\n{previous}\n"
            f"{hashlib.sha256(trailer).hexdigest()}")
    return _sign(ctx.key, text)


@dataclass(frozen=True)
class _Credential:
    access_key: str
    date: str
    region: str
    service: str

    @property
    def scope(self) -> str:
        return f"{self.date}/{self.region}/{self.service}/aws4_request"


def _parse_credential(value: str, error_code: str) -> _Credential:
    parts = value.split("/")
    if len(parts) < 5 or parts[-1] != "aws4_request":
        raise S3Error(error_code, f"The credential {value!r} is malformed; expecting "
                                  "\"<YOUR-AKID>/YYYYMMDD/REGION/SERVICE/aws4_request\".")
    # access keys may themselves contain '/'
    access = "/".join(parts[:-4])
    date, region, service = parts[-4], parts[-3], parts[-2]
    if not re.fullmatch(r"\d{8}", date):
        raise S3Error(error_code, f"The credential date {date!r} is malformed.")
    return _Credential(access, date, region, service)


def _check_scope(cred: _Credential, amz_date: str, region: str, error_code: str) -> None:
    if cred.service != "s3":
        raise S3Error(error_code, f"The service {cred.service!r} is wrong; expecting 's3'.")
    if cred.region != region:
        raise S3Error(error_code, f"The region {cred.region!r} is wrong; expecting {region!r}.",
                      Region=region)
    if amz_date[:8] != cred.date:
        raise S3Error("SignatureDoesNotMatch",
                      "The credential date does not match the request date.")


_AMZ_DATE_RE = re.compile(r"^(\d{4})(\d{2})(\d{2})T(\d{2})(\d{2})(\d{2})Z$")


def _parse_amz_date(value: str) -> float:
    """Seconds since the epoch of a `20250101T000000Z` stamp (strptime costs ~40 us each)."""
    match = _AMZ_DATE_RE.match(value)
    if match:
        year, month, day, hour, minute, second = map(int, match.groups())
        if 1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61:
            return float(calendar.timegm((year, month, day, hour, minute, second)))
    raise S3Error("AccessDenied", "X-Amz-Date is not a valid timestamp.")


def _request_date(headers: Mapping[str, str]) -> str:
    value = headers.get("x-amz-date")
    if value:
        _parse_amz_date(value)
        return value
    value = headers.get("date")
    if value:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            raise S3Error("AccessDenied", "The Date header is not a valid date.") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        return when.astimezone(UTC).strftime(AMZ_DATE_FORMAT)
    raise S3Error("AccessDenied", "AWS authentication requires a valid Date or x-amz-date "
                                  "header.")


def _secret_for(secrets: Mapping[str, str], access_key: str) -> str:
    secret = secrets.get(access_key)
    if secret is None:
        raise S3Error("InvalidAccessKeyId")
    return secret


def _matches(expected: str, given: str) -> bool:
    return hmac.compare_digest(expected.encode(), given.lower().encode())


def _expected_signature(key: bytes, amz_date: str, scope: str, method: str, raw_path: bytes,
                        query: Sequence[tuple[str, str]], headers: Sequence[tuple[str, str]],
                        signed: Sequence[str], payload_hash: str, given: str, *,
                        drop_query: str | None = None) -> str:
    """The request's signature when `given` is right; SignatureDoesNotMatch otherwise.

    SDKs sign the path in AWS's canonical encoding; a few clients sign the path exactly as
    they sent it (e.g. with '=' or ',' left unencoded). Both are tried, canonical first."""
    canonical = canonical_request(method, raw_path, query, headers, signed, payload_hash,
                                  drop_query=drop_query)
    expected = _sign(key, _string_to_sign(amz_date, scope, canonical))
    if _matches(expected, given):
        return expected
    as_sent = raw_path.decode("latin-1") or "/"
    if as_sent != canonical_uri(raw_path):
        verbatim = canonical.split("\n", 2)
        verbatim[1] = as_sent
        expected = _sign(key, _string_to_sign(amz_date, scope, "\n".join(verbatim)))
        if _matches(expected, given):
            return expected
    raise S3Error("SignatureDoesNotMatch")


def verify_request(method: str, raw_path: bytes, query: Sequence[tuple[str, str]],
                   headers: Sequence[tuple[str, str]], secrets: Mapping[str, str],
                   region: str, now: float | None = None, *,
                   vhost_bucket: str | None = None) -> SigningContext:
    """Verify a header-signed or presigned request; raise `S3Error` when it is not valid.

    `headers` are (lower-case name, value) pairs as received; `query` decoded pairs;
    `vhost_bucket` the bucket named by the Host header (SigV2 signs it into the resource).
    SigV2 requests are handed to `gateway/s3/sigv2.py`.
    """
    from .sigv2 import is_v2_presigned, verify_v2

    now = time.time() if now is None else now
    header_map = {name: value for name, value in headers}
    authorization = header_map.get("authorization")
    if (authorization or "").startswith("AWS ") or (not authorization
                                                   and is_v2_presigned(query)):
        return verify_v2(method, raw_path, vhost_bucket, query, headers, secrets, now)
    presigned = any(k == "X-Amz-Signature" for k, _ in query) or any(
        k == "X-Amz-Credential" for k, _ in query)
    if authorization and presigned:
        raise S3Error("InvalidArgument", "Only one auth mechanism allowed; only the "
                                         "X-Amz-Algorithm query parameter or the "
                                         "Authorization header should be specified.")
    if authorization:
        return _verify_header(method, raw_path, query, headers, header_map, authorization,
                              secrets, region, now)
    if presigned:
        return _verify_presigned(method, raw_path, query, headers, secrets, region, now)
    raise S3Error("AccessDenied", "Anonymous access is not allowed; sign the request.")


def _verify_header(method: str, raw_path: bytes, query: Sequence[tuple[str, str]],
                   headers: Sequence[tuple[str, str]], header_map: Mapping[str, str],
                   authorization: str, secrets: Mapping[str, str], region: str,
                   now: float) -> SigningContext:
    match = _AUTH_RE.match(authorization.strip())
    if not match:
        raise S3Error("AuthorizationHeaderMalformed")
    cred = _parse_credential(match["cred"], "AuthorizationHeaderMalformed")
    signed = match["signed"].lower().split(";")
    if "host" not in signed:
        raise S3Error("AccessDenied", "The host header must be signed.")
    amz_date = _request_date(header_map)
    if abs(_parse_amz_date(amz_date) - now) > MAX_SKEW_SECONDS:
        raise S3Error("RequestTimeTooSkewed",
                      RequestTime=amz_date, ServerTime=_format(now),
                      MaxAllowedSkewMilliseconds=str(MAX_SKEW_SECONDS * 1000))
    _check_scope(cred, amz_date, region, "AuthorizationHeaderMalformed")
    secret = _secret_for(secrets, cred.access_key)
    payload_hash = header_map.get("x-amz-content-sha256")
    if not payload_hash:
        raise S3Error("InvalidRequest", "Missing required header for this request: "
                                        "x-amz-content-sha256.")
    key = signing_key(secret, cred.date, cred.region, cred.service)
    expected = _expected_signature(key, amz_date, cred.scope, method, raw_path, query, headers,
                                   signed, payload_hash, match["sig"])
    return SigningContext(cred.access_key, key, amz_date, cred.scope, expected, payload_hash)


def _verify_presigned(method: str, raw_path: bytes, query: Sequence[tuple[str, str]],
                      headers: Sequence[tuple[str, str]], secrets: Mapping[str, str],
                      region: str, now: float) -> SigningContext:
    params = dict(query)
    err = "AuthorizationQueryParametersError"
    for name in ("X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires",
                 "X-Amz-SignedHeaders", "X-Amz-Signature"):
        if not params.get(name):
            raise S3Error(err, f"Query-string authentication version 4 requires the "
                               f"X-Amz-Algorithm, X-Amz-Credential, X-Amz-Signature, X-Amz-Date, "
                               f"X-Amz-SignedHeaders, and X-Amz-Expires parameters ({name} is "
                               f"missing).")
    if params["X-Amz-Algorithm"] != ALGORITHM:
        raise S3Error(err, "X-Amz-Algorithm only supports \"AWS4-HMAC-SHA256\".")
    if "X-Amz-Security-Token" in params:
        raise S3Error("InvalidAccessKeyId", "Temporary credentials are not supported.")
    cred = _parse_credential(params["X-Amz-Credential"], err)
    amz_date = params["X-Amz-Date"]
    signed_at = _parse_amz_date(amz_date)
    expires_text = params["X-Amz-Expires"]
    if not expires_text.isdigit():
        raise S3Error(err, "X-Amz-Expires should be a number.")
    expires = int(expires_text)
    if expires > MAX_PRESIGN_EXPIRES:
        raise S3Error(err, "X-Amz-Expires must be less than a week (in seconds) that is "
                           "604800.")
    if signed_at - now > MAX_SKEW_SECONDS:
        raise S3Error("AccessDenied", "Request is not valid yet.")
    if now > signed_at + expires:
        raise S3Error("AccessDenied", "Request has expired.", Expires=_format(signed_at + expires),
                      ServerTime=_format(now))
    _check_scope(cred, amz_date, region, err)
    secret = _secret_for(secrets, cred.access_key)
    signed = params["X-Amz-SignedHeaders"].lower().split(";")
    if "host" not in signed:
        raise S3Error("AccessDenied", "The host header must be signed.")
    payload_hash = params.get("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
    key = signing_key(secret, cred.date, cred.region, cred.service)
    expected = _expected_signature(key, amz_date, cred.scope, method, raw_path, query, headers,
                                   signed, payload_hash, params["X-Amz-Signature"],
                                   drop_query="X-Amz-Signature")
    return SigningContext(cred.access_key, key, amz_date, cred.scope, expected, payload_hash,
                          presigned=True)


def verify_post_policy(policy: str, credential: str, amz_date: str, signature: str,
                       secrets: Mapping[str, str], region: str) -> SigningContext:
    """A browser upload's SigV4 form signature: the HMAC of the base64 `policy` field under
    the signing key of `credential`'s scope. The policy's expiration bounds its life, so the
    date is not held to the clock skew (as S3)."""
    err = "InvalidArgument"
    cred = _parse_credential(credential, err)
    _parse_amz_date(amz_date)
    _check_scope(cred, amz_date, region, err)
    secret = _secret_for(secrets, cred.access_key)
    key = signing_key(secret, cred.date, cred.region, cred.service)
    expected = _sign(key, policy)
    if not _matches(expected, signature):
        raise S3Error("SignatureDoesNotMatch")
    return SigningContext(cred.access_key, key, amz_date, cred.scope, expected,
                          "UNSIGNED-PAYLOAD")


def _format(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).strftime(AMZ_DATE_FORMAT)
