"""Who may read /minio/v2/metrics/cluster: MinIO's MINIO_PROMETHEUS_AUTH_TYPE.

    jwt (default)  `Authorization: Bearer <token>`, a JWT signed (HS256/384/512) with the root
                   secret key whose subject is the root access key; `python -m cluster
                   prometheus-token` (like `mc admin prometheus generate`) makes one
    public         anyone who can reach the port (a scraper on a trusted network)

Metrics name buckets, nodes and KES endpoints, so they are not public unless asked for.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time

__all__ = ["AUTH_TYPES", "PrometheusAuth", "make_token"]

AUTH_TYPES = ("jwt", "public")
_ALGORITHMS = {"HS256": hashlib.sha256, "HS384": hashlib.sha384, "HS512": hashlib.sha512}
_HUNDRED_YEARS = 100 * 365 * 24 * 3600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def make_token(access_key: str, secret_key: str, *, expires_in: float = _HUNDRED_YEARS,
               now: float | None = None) -> str:
    """A bearer token for Prometheus, shaped like MinIO's (HS512, iss "prometheus")."""
    issued = int(time.time() if now is None else now)
    header = _b64(json.dumps({"alg": "HS512", "typ": "JWT"}, separators=(",", ":")).encode())
    claims = _b64(json.dumps({"exp": issued + int(expires_in), "sub": access_key,
                              "iss": "prometheus"}, separators=(",", ":")).encode())
    signing_input = f"{header}.{claims}".encode()
    signature = hmac.new(secret_key.encode(), signing_input, hashlib.sha512).digest()
    return f"{header}.{claims}.{_b64(signature)}"


class PrometheusAuth:
    """Decides whether a metrics request may be answered; `check` returns "" or the reason."""

    def __init__(self, auth_type: str, access_key: str, secret_key: str):
        if auth_type not in AUTH_TYPES:
            raise ValueError(f"MINIO_PROMETHEUS_AUTH_TYPE must be jwt or public, not "
                             f"{auth_type!r}")
        self.auth_type = auth_type
        self._access = access_key
        self._secret = secret_key.encode()

    def check(self, authorization: str | None, now: float | None = None) -> str:
        if self.auth_type == "public":
            return ""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return ("metrics need an Authorization: Bearer token "
                    "(or MINIO_PROMETHEUS_AUTH_TYPE=public)")
        return self._verify(token.strip(), time.time() if now is None else now)

    def _verify(self, token: str, now: float) -> str:
        parts = token.split(".")
        if len(parts) != 3:
            return "the bearer token is not a JWT"
        try:
            header = json.loads(_unb64(parts[0]))
            claims = json.loads(_unb64(parts[1]))
            signature = _unb64(parts[2])
        except (ValueError, UnicodeDecodeError):
            return "the bearer token is not a JWT"
        if not isinstance(header, dict) or not isinstance(claims, dict):
            return "the bearer token is not a JWT"
        digest = _ALGORITHMS.get(str(header.get("alg")))
        if digest is None:
            return "the bearer token must be signed with HS256, HS384 or HS512"
        expected = hmac.new(self._secret, f"{parts[0]}.{parts[1]}".encode(), digest).digest()
        if not hmac.compare_digest(expected, signature):
            return "the bearer token's signature does not match"
        subject = claims.get("sub") or claims.get("accessKey")
        if subject != self._access:
            return "the bearer token is not for this server's access key"
        try:
            if "exp" in claims and float(claims["exp"]) < now:
                return "the bearer token has expired"
            if "nbf" in claims and float(claims["nbf"]) > now + 60:
                return "the bearer token is not valid yet"
        except (TypeError, ValueError):
            return "the bearer token's times are not numbers"
        return ""
