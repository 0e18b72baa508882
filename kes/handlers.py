"""The KES endpoint handlers: keys, status, policies and identities. Each takes
(state, request, resource, identity) and returns a Response or raises an APIError."""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import __version__
from .auth import Authorizer, valid_name, valid_pattern
from .cache import KeyCache
from .config import ServerConfig
from .crypto import SecretKey, key_hmac, new_key, parse_cipher
from .crypto import decrypt as open_ciphertext
from .crypto import encrypt as seal
from .errors import APIError, IdentityNotFound, KeyExists, KeyNotFound, PolicyNotFound
from .http_server import Request, Response
from .keyfile import encode_key, format_time
from .keystore import KeyStore, KeystoreError
from .metrics import ServerMetrics, rss_bytes

__all__ = ["State", "error_response", "json_response"]

_INVALID_BODY = "invalid request body"
_PLATFORM_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


@dataclass
class State:
    """Everything a handler may touch."""

    config: ServerConfig
    store: KeyStore
    cache: KeyCache
    authorizer: Authorizer
    metrics: ServerMetrics = field(default_factory=ServerMetrics)
    started: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC))
    routes: tuple = ()
    log_error: Callable[[str], None] = print
    audit: Callable[[dict], None] = lambda _record: None


def json_response(doc: object, status: int = 200) -> Response:
    body = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
    return Response(status, body, "application/json")


def error_response(status: int, message: str, headers: list | None = None) -> Response:
    response = json_response({"message": message}, status)
    response.headers = headers or []
    return response


def _empty() -> Response:
    return Response(200)


def _key_name(name: str) -> str:
    if not valid_name(name):
        raise APIError(f"key name '{name}' is empty, too long or contains invalid characters", 400)
    return name


def _body(request: Request, message: str = _INVALID_BODY) -> dict[str, Any]:
    if request.body_too_large:
        raise APIError(message, 400)
    try:
        doc = json.loads(request.body) if request.body.strip() else {}
    except (ValueError, UnicodeDecodeError):
        raise APIError(message, 400) from None
    if not isinstance(doc, dict):
        raise APIError(message, 400)
    return doc


def _b64(doc: dict[str, Any], name: str, message: str = _INVALID_BODY) -> bytes:
    value = doc.get(name)
    if value is None:
        return b""
    if not isinstance(value, str):
        raise APIError(message, 400)
    try:
        return base64.b64decode(value.replace("\r", "").replace("\n", ""), validate=True)
    except (binascii.Error, ValueError):
        raise APIError(message, 400) from None


def _enc(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _load_key(state: State, name: str) -> SecretKey:
    try:
        return state.cache.get(name)
    except KeystoreError as exc:
        state.log_error(f"failed to read key {name}: {exc}")
        raise APIError("failed to read key", 502) from exc


# ---- system ----

def version(state: State, request: Request, resource: str, identity: str) -> Response:
    return json_response({"version": __version__, "commit": "tessera"})


def _keystore_state(state: State) -> tuple[float, bool]:
    """(latency seconds, unreachable). While offline, re-probe at most once a second so that
    readiness probes never wait on a dead keystore (KES #412)."""
    cache = state.cache
    if cache.offline and time.monotonic() - cache.last_check < 1.0:
        return 0.0, True
    reachable = state.cache.check_status()
    return state.cache.latency, not reachable


def ready(state: State, request: Request, resource: str, identity: str) -> Response:
    _, unreachable = _keystore_state(state)
    if unreachable:
        raise APIError("key store is not reachable", 504)
    return _empty()


def status(state: State, request: Request, resource: str, identity: str) -> Response:
    latency, unreachable = _keystore_state(state)
    doc: dict[str, Any] = {
        "version": __version__,
        "os": platform.system().lower(),
        "arch": _PLATFORM_ARCH.get(platform.machine(), platform.machine()),
        "uptime": int(time.time() - state.metrics.started),
        "num_cpu": os.cpu_count() or 1,
        "num_cpu_used": len(os.sched_getaffinity(0)),
        "mem_heap_used": rss_bytes(),
        "mem_stack_used": 0,
    }
    if int(latency * 1000):
        doc["keystore_latency"] = int(latency * 1000)
    if unreachable:
        # kms-go rejects unreachable without unavailable; send both (see the spec, §3)
        doc["keystore_unreachable"] = True
        doc["keystore_unavailable"] = True
    return json_response(doc)


def metrics(state: State, request: Request, resource: str, identity: str) -> Response:
    return Response(200, state.metrics.render().encode(),
                    "text/plain; version=0.0.4; charset=utf-8")


def list_apis(state: State, request: Request, resource: str, identity: str) -> Response:
    return json_response([{"method": r.method, "path": r.path, "max_body": r.max_body,
                           "timeout": int(r.timeout)} for r in state.routes])


# ---- keys ----

def create_key(state: State, request: Request, resource: str, identity: str) -> Response:
    name = _key_name(resource)
    _store_new(state, name, new_key(identity), identity, request)
    return _empty()


def _store_new(state: State, name: str, key: SecretKey, identity: str, request: Request) -> None:
    try:
        state.store.create(name, encode_key(key))
    except KeyExists:
        raise
    except KeystoreError as exc:
        state.log_error(f"failed to create key {name}: {exc}")
        raise APIError("failed to create key", 502) from exc
    state.audit({"time": format_time(datetime.datetime.now(datetime.UTC)),
                 "request": {"ip": request.remote.rsplit(":", 1)[0], "path": request.path,
                             "identity": identity},
                 "response": {"code": 200}})


def import_key(state: State, request: Request, resource: str, identity: str) -> Response:
    name = _key_name(resource)
    message = "invalid import key request body"
    doc = _body(request, message)
    key = _b64(doc, "key", message)
    cipher_name = doc.get("cipher") or ""
    if not isinstance(cipher_name, str):
        raise APIError(message, 400)
    cipher = parse_cipher(cipher_name)
    if cipher is None:
        raise APIError(f"algorithm '{cipher_name}' is not supported", 406)
    if len(key) != 32:
        raise APIError(f"invalid key size for '{cipher_name}'", 406)
    _store_new(state, name, new_key(identity, cipher, key), identity, request)
    return _empty()


def describe_key(state: State, request: Request, resource: str, identity: str) -> Response:
    name = _key_name(resource)
    key = _load_key(state, name)
    doc = {"name": name, "algorithm": key.cipher, "created_at": format_time(key.created_at)}
    if key.created_by:
        doc["created_by"] = key.created_by
    return json_response(doc)


def list_keys(state: State, request: Request, resource: str, identity: str) -> Response:
    if not valid_pattern(resource):
        raise APIError(f"listing pattern '{resource}' is empty, too long or is invalid", 400)
    prefix = "" if resource == "*" else resource  # KES keeps any other trailing '*' literally
    try:
        names, continue_at = state.store.list(prefix)
    except KeystoreError as exc:
        state.log_error(f"failed to list keys: {exc}")
        raise APIError("failed to list keys", 502) from exc
    doc: dict[str, Any] = {"names": names}
    if continue_at:
        doc["continue_at"] = continue_at
    return json_response(doc)


def delete_key(state: State, request: Request, resource: str, identity: str) -> Response:
    name = _key_name(resource)
    try:
        state.store.delete(name)
    except KeyNotFound:
        state.cache.forget(name)
        raise
    except KeystoreError as exc:
        state.log_error(f"failed to delete key {name}: {exc}")
        raise APIError("failed to delete key", 502) from exc
    state.cache.forget(name)
    state.audit({"time": format_time(datetime.datetime.now(datetime.UTC)),
                 "request": {"ip": request.remote.rsplit(":", 1)[0], "path": request.path,
                             "identity": identity}, "response": {"code": 200}})
    return _empty()


def generate_key(state: State, request: Request, resource: str, identity: str) -> Response:
    name = _key_name(resource)
    doc = _body(request) if request.body or request.body_too_large else {}
    context = _b64(doc, "context")
    key = _load_key(state, name)
    plaintext = os.urandom(32)
    return json_response({"plaintext": _enc(plaintext),
                          "ciphertext": _enc(seal(key, plaintext, context))})


def encrypt(state: State, request: Request, resource: str, identity: str) -> Response:
    name = _key_name(resource)
    doc = _body(request)
    plaintext, context = _b64(doc, "plaintext"), _b64(doc, "context")
    key = _load_key(state, name)
    return json_response({"ciphertext": _enc(seal(key, plaintext, context))})


def decrypt(state: State, request: Request, resource: str, identity: str) -> Response:
    name = _key_name(resource)
    doc = _body(request)
    ciphertext, context = _b64(doc, "ciphertext"), _b64(doc, "context")
    key = _load_key(state, name)
    return json_response({"plaintext": _enc(open_ciphertext(key, ciphertext, context))})


def bulk_decrypt(state: State, request: Request, resource: str, identity: str) -> Response:
    """The v1 API MinIO used 2022-2023: an array in, an array out, first failure aborts."""
    name = _key_name(resource)
    if request.body_too_large:
        raise APIError(_INVALID_BODY, 400)
    try:
        items = json.loads(request.body or b"[]")
    except (ValueError, UnicodeDecodeError):
        raise APIError(_INVALID_BODY, 400) from None
    if not isinstance(items, list) or not all(isinstance(i, dict) for i in items):
        raise APIError(_INVALID_BODY, 400)
    if len(items) > 1000:
        raise APIError("too many ciphertexts", 400)
    key = _load_key(state, name)
    out = [{"plaintext": _enc(open_ciphertext(key, _b64(i, "ciphertext"), _b64(i, "context")))}
           for i in items]
    return json_response(out)


def hmac(state: State, request: Request, resource: str, identity: str) -> Response:
    name = _key_name(resource)
    message = _b64(_body(request), "message")
    key = _load_key(state, name)
    if key.hmac_key is None:
        raise APIError("key does not support HMAC", 409)
    return json_response({"hmac": _enc(key_hmac(key, message))})


# ---- policies and identities (read-only: they live in the config file) ----

def _authorizer(state: State) -> Authorizer:
    return state.authorizer


def _policy(state: State, name: str) -> Any:
    if not valid_name(name):
        raise APIError(f"policy name '{name}' is empty, too long or contains invalid "
                       "characters", 400)
    policy = _authorizer(state).policies.get(name)
    if policy is None:
        raise PolicyNotFound
    return policy


def _admin(state: State) -> str:
    return _authorizer(state).admin or ""


def describe_policy(state: State, request: Request, resource: str, identity: str) -> Response:
    policy = _policy(state, resource)
    return json_response({"name": policy.name, "created_at": format_time(state.started),
                          "created_by": _admin(state)})


def _policy_doc(state: State, policy: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"name": policy.name, "allow": {p: {} for p in policy.allow}}
    if policy.deny:
        doc["deny"] = {p: {} for p in policy.deny}
    doc["created_at"] = format_time(state.started)
    doc["created_by"] = _admin(state)
    return doc


def read_policy(state: State, request: Request, resource: str, identity: str) -> Response:
    return json_response(_policy_doc(state, _policy(state, resource)))


def _list_pattern(resource: str) -> str:
    if not valid_pattern(resource):
        raise APIError(f"listing pattern '{resource}' is empty, too long or is invalid", 400)
    return resource.removesuffix("*")


def list_policies(state: State, request: Request, resource: str, identity: str) -> Response:
    prefix = _list_pattern(resource)
    names = sorted(n for n in _authorizer(state).policies if n.startswith(prefix))
    return json_response({"names": names, "continue_at": ""})


def describe_identity(state: State, request: Request, resource: str, identity: str) -> Response:
    auth = _authorizer(state)
    if auth.is_admin(resource):
        return json_response({"admin": True, "created_at": format_time(state.started)})
    policy = auth.policy_of(resource)
    if policy is None:
        raise IdentityNotFound
    return json_response({"policy": policy.name, "created_at": format_time(state.started),
                          "created_by": _admin(state)})


def list_identities(state: State, request: Request, resource: str, identity: str) -> Response:
    prefix = _list_pattern(resource)
    auth = _authorizer(state)
    everyone = set(auth.by_identity) | ({auth.admin} if auth.admin else set())
    return json_response({"identities": sorted(i for i in everyone if i.startswith(prefix)),
                          "continue_at": ""})


def self_describe(state: State, request: Request, resource: str, identity: str) -> Response:
    """KES's intended reply (the current KES answers 404 to every non-admin: a bug)."""
    auth = _authorizer(state)
    created = format_time(state.started)
    if auth.is_admin(identity):
        return json_response({"identity": identity, "admin": True, "created_at": created})
    policy = auth.policy_of(identity)
    if policy is None:
        raise IdentityNotFound
    return json_response({"identity": identity, "created_at": created,
                          "created_by": _admin(state), "policy": _policy_doc(state, policy)})
