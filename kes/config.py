"""The server's configuration: KES's YAML file shape, parsed into one frozen dataclass.

Every problem is reported as one ConfigError line naming the field (`tls.key: ...`).
String values of the form `${NAME}` are replaced by the environment variable NAME.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from .auth import Policy, valid_name
from .cache import CacheExpiry
from .identity import is_identity

__all__ = ["APIOverride", "AwsConfig", "ConfigError", "ServerConfig", "load_config",
           "parse_config", "parse_duration"]

DEFAULT_ADDRESS = "0.0.0.0:7373"


class ConfigError(ValueError):
    """The configuration cannot be used; the message is one line naming the field."""


@dataclass(frozen=True)
class AwsConfig:
    """keystore.aws.secretsmanager: endpoint URL, region, KMS key id, static credentials."""

    endpoint: str = ""
    region: str = ""
    kms_key: str = ""
    access_key: str = ""
    secret_key: str = ""
    session_token: str = ""


@dataclass(frozen=True)
class APIOverride:
    """api.<path>: skip authentication and/or a different handler timeout (seconds)."""

    skip_auth: bool = False
    timeout: float | None = None


@dataclass(frozen=True)
class ServerConfig:
    """Everything `python -m kes` needs; field names follow the YAML paths."""

    address: str = DEFAULT_ADDRESS          # host:port to listen on
    admin: str | None = None                # admin identity (hex) or None when disabled
    tls_key: str = ""                       # PEM private key of the server
    tls_cert: str = ""                      # PEM certificate (chain) of the server
    tls_password: str = ""                  # decrypts an encrypted tls_key
    tls_auth: bool = False                  # verify client certs against tls_ca (else pinning)
    tls_ca: str = ""                        # PEM file or directory of client CAs
    policies: dict[str, Policy] = field(default_factory=dict)
    cache: CacheExpiry = field(default_factory=CacheExpiry)
    api: dict[str, APIOverride] = field(default_factory=dict)
    keystore: str = "mem"                   # "fs" | "aws" | "mem"
    fs_path: str = ""
    aws: AwsConfig = field(default_factory=AwsConfig)
    keys: tuple[str, ...] = ()              # keys created at start-up
    log_error: bool = True
    log_audit: bool = True

    def with_overrides(self, **changes: Any) -> ServerConfig:
        return replace(self, **{k: v for k, v in changes.items() if v is not None})


_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str, where: str) -> float:
    """A Go duration (`5m0s`, `20s`, `1h30m`, `0`) in seconds; negative values are rejected."""
    text = str(text).strip()
    if text in ("0", ""):
        return 0.0
    if text.startswith("-"):
        raise ConfigError(f"{where}: negative duration {text!r}")
    pos, total = 0, 0.0
    for m in _DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text):
        raise ConfigError(f"{where}: invalid duration {text!r} (use e.g. 30s, 5m, 1h)")
    return total


_ENV = re.compile(r"\$\{(\w+)\}")


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):
        m = _ENV.fullmatch(value.strip())
        if m:
            if m.group(1) not in os.environ:
                raise ConfigError(f"{where}: environment variable {m.group(1)} is not set")
            return os.environ[m.group(1)]
    return value


def _section(doc: dict, name: str, where: str, known: set[str]) -> dict:
    value = doc.get(name) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{where}: expected a mapping")
    unknown = set(value) - known
    if unknown:
        raise ConfigError(f"{where}.{sorted(unknown)[0]}: unknown field")
    return value


def _string(doc: dict, name: str, where: str, required: bool = False) -> str:
    value = _expand(doc.get(name), where)
    if value is None or value == "":
        if required:
            raise ConfigError(f"{where}: required but missing")
        return ""
    if not isinstance(value, str | int):
        raise ConfigError(f"{where}: expected a string")
    return str(value)


def _on_off(value: Any, where: str, default: bool) -> bool:
    value = _expand(value, where)
    if value is None or value == "":
        return default
    if isinstance(value, bool):
        return value
    text = str(value).lower()
    if text in ("on", "true", "debug", "info", "warn", "error"):
        return True
    if text in ("off", "false"):
        return False
    raise ConfigError(f"{where}: expected on or off, got {value!r}")


_TOP = {"version", "address", "admin", "root", "tls", "policy", "cache", "api", "log",
        "keystore", "keys"}


def parse_config(doc: Any) -> ServerConfig:
    """Validate a parsed YAML document into a ServerConfig (relative paths are from the cwd,
    as in KES)."""
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise ConfigError("config: expected a YAML mapping at the top level")
    unknown = set(doc) - _TOP
    if unknown:
        raise ConfigError(f"{sorted(unknown)[0]}: unknown field")
    version = _string(doc, "version", "version")
    if version not in ("", "v1"):
        raise ConfigError(f"version: unsupported config version {version!r} (want v1)")
    tls = _section(doc, "tls", "tls", {"key", "cert", "password", "auth", "ca", "proxy"})
    cfg = ServerConfig(
        address=_string(doc, "address", "address") or DEFAULT_ADDRESS,
        admin=_admin(doc),
        tls_key=_string(tls, "key", "tls.key", required=True),
        tls_cert=_string(tls, "cert", "tls.cert", required=True),
        tls_password=_string(tls, "password", "tls.password"),
        tls_auth=_on_off(tls.get("auth"), "tls.auth", False),
        tls_ca=_string(tls, "ca", "tls.ca"),
        cache=_cache(doc),
        api=_api(doc),
        keys=_keys(doc),
    )
    log = _section(doc, "log", "log", {"error", "audit"})
    cfg = replace(cfg, log_error=_on_off(log.get("error"), "log.error", True),
                  log_audit=_on_off(log.get("audit"), "log.audit", True))
    cfg = replace(cfg, policies=_policies(doc, cfg.admin))
    return _keystore(doc, cfg)


def _admin(doc: dict) -> str | None:
    admin = _section(doc, "admin", "admin", {"identity"})
    ident = _string(admin, "identity", "admin.identity") or _string(doc, "root", "root")
    if not ident:
        raise ConfigError("admin.identity: required but missing (use `disabled` to turn off)")
    return ident.lower() if is_identity(ident) else None


def _cache(doc: dict) -> CacheExpiry:
    cache = _section(doc, "cache", "cache", {"expiry"})
    expiry = _section(cache, "expiry", "cache.expiry", {"any", "unused", "offline"})
    values = {k: parse_duration(_expand(expiry.get(k, ""), f"cache.expiry.{k}") or "",
                                f"cache.expiry.{k}") for k in ("any", "unused", "offline")}
    return CacheExpiry(any=values["any"] or 300.0, unused=values["unused"] or 30.0,
                       offline=values["offline"])


def _api(doc: dict) -> dict[str, APIOverride]:
    api = doc.get("api") or {}
    if not isinstance(api, dict):
        raise ConfigError("api: expected a mapping of paths")
    out = {}
    for path, value in api.items():
        where = f"api.{path}"
        spec = value or {}
        if not isinstance(spec, dict) or set(spec) - {"skip_auth", "timeout"}:
            raise ConfigError(f"{where}: expected skip_auth and/or timeout")
        timeout = spec.get("timeout")
        out[str(path)] = APIOverride(
            skip_auth=_on_off(spec.get("skip_auth"), f"{where}.skip_auth", False),
            timeout=parse_duration(_expand(timeout, where), f"{where}.timeout")
            if timeout not in (None, "") else None)
    return out


def _keys(doc: dict) -> tuple[str, ...]:
    keys = doc.get("keys") or []
    if not isinstance(keys, list):
        raise ConfigError("keys: expected a list of {name: ...}")
    names = []
    for i, item in enumerate(keys):
        name = _string(item if isinstance(item, dict) else {}, "name", f"keys[{i}].name", True)
        if not valid_name(name):
            raise ConfigError(f"keys[{i}].name: invalid key name {name!r}")
        names.append(name)
    return tuple(names)


def _patterns(spec: dict, name: str, where: str) -> tuple[str, ...]:
    value = spec.get(name) or []
    if not isinstance(value, list):
        raise ConfigError(f"{where}: expected a list")
    return tuple(str(_expand(v, where)) for v in value)


def _policies(doc: dict, admin: str | None) -> dict[str, Policy]:
    section = doc.get("policy") or {}
    if not isinstance(section, dict):
        raise ConfigError("policy: expected a mapping of policy names")
    policies, owner = {}, {}
    for name, value in section.items():
        where = f"policy.{name}"
        if not valid_name(str(name)):
            raise ConfigError(f"{where}: invalid policy name")
        spec = value or {}
        if not isinstance(spec, dict) or set(spec) - {"allow", "deny", "identities"}:
            raise ConfigError(f"{where}: expected allow, deny and identities")
        idents = []
        for text in _patterns(spec, "identities", f"{where}.identities"):
            if not text:
                continue
            if not is_identity(text):
                raise ConfigError(f"{where}.identities: {text!r} is not a hex identity")
            ident = text.lower()
            if ident == admin:
                raise ConfigError(f"{where}.identities: the admin identity may not have a policy")
            if ident in owner:
                raise ConfigError(f"{where}.identities: {ident} already belongs to policy "
                                  f"{owner[ident]}")
            owner[ident] = name
            idents.append(ident)
        policies[str(name)] = Policy(str(name), _patterns(spec, "allow", f"{where}.allow"),
                                     _patterns(spec, "deny", f"{where}.deny"), tuple(idents))
    return policies


_STORES = {"fs", "aws", "vault", "fortanix", "gemalto", "gcp", "azure", "entrust"}


def _keystore(doc: dict, cfg: ServerConfig) -> ServerConfig:
    section = _section(doc, "keystore", "keystore", _STORES)
    chosen = [k for k, v in section.items() if v]
    if not chosen:
        return replace(cfg, keystore="mem")
    if len(chosen) > 1:
        raise ConfigError(f"keystore: exactly one keystore allowed, got {', '.join(chosen)}")
    kind = chosen[0]
    if kind == "fs":
        fs = _section(section, "fs", "keystore.fs", {"path"})
        return replace(cfg, keystore="fs", fs_path=_string(fs, "path", "keystore.fs.path", True))
    if kind != "aws":
        raise ConfigError(f"keystore.{kind}: not supported by this server (use fs or aws)")
    aws = _section(section, "aws", "keystore.aws", {"secretsmanager"})
    sm = _section(aws, "secretsmanager", "keystore.aws.secretsmanager",
                  {"endpoint", "region", "kmskey", "credentials"})
    creds = _section(sm, "credentials", "keystore.aws.secretsmanager.credentials",
                     {"accesskey", "secretkey", "token"})
    w = "keystore.aws.secretsmanager"
    return replace(cfg, keystore="aws", aws=AwsConfig(
        endpoint=_string(sm, "endpoint", f"{w}.endpoint"),
        region=_string(sm, "region", f"{w}.region", required=True),
        kms_key=_string(sm, "kmskey", f"{w}.kmskey"),
        access_key=_string(creds, "accesskey", f"{w}.credentials.accesskey"),
        secret_key=_string(creds, "secretkey", f"{w}.credentials.secretkey"),
        session_token=_string(creds, "token", f"{w}.credentials.token"),
    ))


def load_config(path: Path | str) -> ServerConfig:
    """Read and validate a KES YAML config file."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ConfigError(f"config: cannot read {path}: {exc.strerror}") from exc
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path} is not valid YAML: "
                          f"{str(exc).splitlines()[0]}") from exc
    return parse_config(doc)
