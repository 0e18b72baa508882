"""The gateway's configuration: one frozen dataclass, read from flags with environment defaults.

Names a MinIO operator already uses work unchanged (`MINIO_ROOT_USER`, `MINIO_ROOT_PASSWORD`,
the older `MINIO_ACCESS_KEY` / `MINIO_SECRET_KEY`, `MINIO_STORAGE_CLASS_STANDARD`,
`MINIO_DOMAIN`, `MINIO_REGION`, the KMS set `MINIO_KMS_KES_*` and
`MINIO_KMS_AUTO_ENCRYPTION`); our own names use the `TESSERA_GATEWAY_` / `TESSERA_KMS_`
prefixes. A missing or
bad setting raises `ConfigError` whose message is the single line printed at start-up.
"""

from __future__ import annotations

import argparse
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from common.topology import Topology, TopologyError
from gateway.crypto.cache import DataKeyCacheConfig
from gateway.crypto.kms import valid_key_name
from gateway.crypto.policy import auto_encryption_from_env
from gateway.placement import default_parity
from kes.client import (
    ENV_API_KEY,
    ENV_CAPATH,
    ENV_CERT_FILE,
    ENV_ENDPOINT,
    ENV_KEY_FILE,
    ENV_KEY_NAME,
    KESConfig,
    client_ssl_context,
)

__all__ = [
    "ENV_ACCESS_KEY",
    "ENV_DOMAIN",
    "ENV_REGION",
    "ENV_ROOT_PASSWORD",
    "ENV_ROOT_USER",
    "ENV_SECRET_KEY",
    "ENV_STORAGE_CLASS_STANDARD",
    "ConfigError",
    "GatewayConfig",
    "KMSSettings",
    "kms_settings_from_env",
    "load_config",
]

ENV_ROOT_USER = "MINIO_ROOT_USER"
ENV_ROOT_PASSWORD = "MINIO_ROOT_PASSWORD"
ENV_ACCESS_KEY = "MINIO_ACCESS_KEY"  # deprecated MinIO name, still honoured
ENV_SECRET_KEY = "MINIO_SECRET_KEY"  # deprecated MinIO name, still honoured
ENV_STORAGE_CLASS_STANDARD = "MINIO_STORAGE_CLASS_STANDARD"  # "EC:<parity>"
ENV_DOMAIN = "MINIO_DOMAIN"  # comma-separated domains for virtual-host-style requests
ENV_REGION = "MINIO_REGION"  # region clients must sign for
ENV_SITE_REGION = "MINIO_SITE_REGION"  # MinIO's newer name for the same
ENV_LISTEN = "TESSERA_GATEWAY_LISTEN"
ENV_TLS_LISTEN = "TESSERA_GATEWAY_TLS_LISTEN"
ENV_LOG_LEVEL = "TESSERA_GATEWAY_LOG_LEVEL"
# seconds a gateway trusts its copy of a bucket's default encryption (other gateways' changes
# show after at most this long; its own at once)
ENV_BUCKET_CONFIG_TTL = "TESSERA_GATEWAY_BUCKET_CONFIG_TTL"
ENV_PROMETHEUS_AUTH_TYPE = "MINIO_PROMETHEUS_AUTH_TYPE"  # "jwt" (default) or "public"
ENV_SCANNER = "TESSERA_GATEWAY_SCANNER"  # "on": this gateway runs the heal scanner
ENV_REQUESTS_MAX = "MINIO_API_REQUESTS_MAX"  # S3 requests served at once; 0 = from memory
ENV_REQUESTS_DEADLINE = "MINIO_API_REQUESTS_DEADLINE"  # wait for a place, e.g. "10s"
# while this file exists /minio/health/ready answers 503 "draining" (default <state-dir>/drain)
ENV_DRAIN_FILE = "TESSERA_DRAIN_FILE"
DRAIN_FILE_NAME = "drain"
SECRET_FILE_SUFFIX = "_FILE"  # e.g. MINIO_ROOT_PASSWORD_FILE=/run/secrets/password

DEFAULT_REGION = "us-east-1"


class ConfigError(ValueError):
    """A setting is missing or invalid; the message is one line naming the setting."""


@dataclass(frozen=True)
class KMSSettings:
    """How the gateway reaches KES (MINIO_KMS_KES_*) and what it caches (TESSERA_KMS_*)."""

    kes: KESConfig
    cache: DataKeyCacheConfig = field(default_factory=DataKeyCacheConfig)

    @property
    def default_key(self) -> str:
        return self.kes.key_name


@dataclass(frozen=True)
class GatewayConfig:
    """Everything the gateway process needs; built once at start-up by `load_config`."""

    access_key: str  # root access key (MINIO_ROOT_USER); at least 3 characters
    secret_key: str = field(repr=False)  # root secret (MINIO_ROOT_PASSWORD); at least 8 chars
    listen: tuple[str, int] | None = None  # plain-HTTP S3 address (host, port)
    tls_listen: tuple[str, int] | None = None  # HTTPS S3 address (host, port)
    tls_cert: Path | None = None  # PEM certificate chain served on tls_listen
    tls_key: Path | None = None  # PEM private key of tls_cert
    topology: Path | None = None  # topology.json of the storage nodes (absent with memory)
    state_dir: Path | None = None  # directory for the gateway's local state (heal queue, ...)
    node_cert: Path | None = None  # client certificate presented to storage nodes (mTLS)
    node_key: Path | None = None
    node_ca: Path | None = None  # CA that signed the storage nodes' certificates
    memory: bool = False  # dev/test only: keep every object in this process's memory
    parity: int | None = None  # MINIO_STORAGE_CLASS_STANDARD=EC:n; None = MinIO's default
    domains: tuple[str, ...] = ()  # virtual-host-style bucket domains (MINIO_DOMAIN)
    region: str = DEFAULT_REGION  # region in the SigV4 credential scope
    log_level: str = "info"
    scanner: bool = False  # run the background heal scanner (one gateway per cluster)
    kms: KMSSettings | None = None  # None: no KMS (SSE-S3/SSE-KMS answer 501; SSE-C works)
    auto_encryption: bool = False  # MINIO_KMS_AUTO_ENCRYPTION=on: SSE-S3 for plain writes
    bucket_config_ttl: float = 1.0  # TESSERA_GATEWAY_BUCKET_CONFIG_TTL (0 = ask every time)
    prometheus_auth: str = "jwt"  # MINIO_PROMETHEUS_AUTH_TYPE: jwt (bearer token) or public
    requests_max: int = 0  # MINIO_API_REQUESTS_MAX; 0 = auto_requests_max() (gateway/s3/admission)
    requests_deadline: float = 10.0  # MINIO_API_REQUESTS_DEADLINE, seconds
    drain_file: Path | None = None  # exists => draining (ready 503); None: no drain switch

    def parity_for(self, set_size: int) -> int:
        """Parity shards per erasure set: the configured EC:n, else MinIO's default."""
        return self.parity if self.parity is not None else default_parity(set_size)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway",
                                description="Tessera S3 gateway (HTTP and/or HTTPS).")
    p.add_argument("--listen", help=f"HTTP address host:port (env {ENV_LISTEN})")
    p.add_argument("--tls-listen", help=f"HTTPS address host:port (env {ENV_TLS_LISTEN})")
    p.add_argument("--tls-cert", help="PEM certificate for --tls-listen")
    p.add_argument("--tls-key", help="PEM private key for --tls-listen")
    p.add_argument("--topology", help="topology.json describing the storage nodes")
    p.add_argument("--state-dir", help="directory for the gateway's local state")
    p.add_argument("--node-cert", help="client certificate for mTLS to storage nodes")
    p.add_argument("--node-key", help="private key of --node-cert")
    p.add_argument("--node-ca", help="CA certificate of the storage nodes")
    p.add_argument("--domain", help=f"virtual-host-style domain(s), comma-separated "
                                    f"(env {ENV_DOMAIN})")
    p.add_argument("--region", help=f"SigV4 region (env {ENV_REGION}, default {DEFAULT_REGION})")
    p.add_argument("--memory", action="store_true",
                   help="DEVELOPMENT/TESTS ONLY: store objects in this process's memory "
                        "(lost at exit); no storage nodes are used")
    p.add_argument("--log-level", help=f"debug|info|warning|error (env {ENV_LOG_LEVEL})")
    p.add_argument("--scanner", action="store_true",
                   help=f"run the background heal scanner here; one gateway of a cluster is "
                        f"enough (env {ENV_SCANNER}=on)")
    p.add_argument("--drain-file",
                   help=f"while this file exists /minio/health/ready answers 503 (draining) "
                        f"and S3 is still served (env {ENV_DRAIN_FILE}, default "
                        f"<state-dir>/{DRAIN_FILE_NAME})")
    return p


def load_config(argv: Sequence[str] | None = None,
                environ: Mapping[str, str] | None = None) -> GatewayConfig:
    """Parse flags (with environment defaults) into a validated `GatewayConfig`."""
    env = dict(os.environ if environ is None else environ)
    args = _parser().parse_args(argv)
    access, secret = _credentials(env)
    listen = _address("--listen", args.listen or env.get(ENV_LISTEN))
    tls_listen = _address("--tls-listen", args.tls_listen or env.get(ENV_TLS_LISTEN))
    if listen is None and tls_listen is None:
        raise ConfigError("no address to serve: give --listen and/or --tls-listen")
    tls_cert, tls_key = _path(args.tls_cert, "--tls-cert"), _path(args.tls_key, "--tls-key")
    if tls_listen and not (tls_cert and tls_key):
        raise ConfigError("--tls-listen needs both --tls-cert and --tls-key")
    topology = _path(args.topology, "--topology")
    if not args.memory and topology is None:
        raise ConfigError("--topology is required (or --memory for a development gateway)")
    parity = _parity(env.get(ENV_STORAGE_CLASS_STANDARD))
    if topology is not None and not args.memory:
        _check_parity(parity, topology)
    node_tls = [_path(args.node_cert, "--node-cert"), _path(args.node_key, "--node-key"),
                _path(args.node_ca, "--node-ca")]
    if any(node_tls) and not all(node_tls):
        raise ConfigError("--node-cert, --node-key and --node-ca go together")
    kms = kms_settings_from_env(env)
    try:
        auto_encryption = auto_encryption_from_env(env, kms_configured=kms is not None)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.memory and (kms is not None or auto_encryption):
        raise ConfigError("--memory is a development backend that never encrypts: unset "
                          f"{ENV_ENDPOINT} and MINIO_KMS_AUTO_ENCRYPTION")
    prometheus_auth = env.get(ENV_PROMETHEUS_AUTH_TYPE, "").strip().lower() or "jwt"
    if prometheus_auth not in ("jwt", "public"):
        raise ConfigError(f"{ENV_PROMETHEUS_AUTH_TYPE}={prometheus_auth!r} must be jwt or "
                          "public")
    level = (args.log_level or env.get(ENV_LOG_LEVEL) or "info").lower()
    if level not in ("debug", "info", "warning", "error"):
        raise ConfigError(f"log level {level!r} is not one of debug, info, warning, error")
    state_dir = Path(args.state_dir) if args.state_dir else None
    drain = args.drain_file or env.get(ENV_DRAIN_FILE, "").strip()
    drain_file = Path(drain) if drain else (state_dir / DRAIN_FILE_NAME if state_dir else None)
    return GatewayConfig(
        access_key=access, secret_key=secret, listen=listen, tls_listen=tls_listen,
        tls_cert=tls_cert, tls_key=tls_key, topology=topology,
        state_dir=state_dir, drain_file=drain_file,
        node_cert=node_tls[0], node_key=node_tls[1], node_ca=node_tls[2],
        memory=args.memory, parity=parity,
        domains=_domains(args.domain or env.get(ENV_DOMAIN, "")),
        region=_region(args.region or env.get(ENV_REGION) or env.get(ENV_SITE_REGION)),
        log_level=level,
        scanner=args.scanner or env.get(ENV_SCANNER, "").strip().lower() in ("on", "1", "true"),
        kms=kms, auto_encryption=auto_encryption,
        bucket_config_ttl=_seconds(env, ENV_BUCKET_CONFIG_TTL, 1.0),
        prometheus_auth=prometheus_auth,
        requests_max=_requests_max(env.get(ENV_REQUESTS_MAX, "")),
        requests_deadline=_requests_deadline(env.get(ENV_REQUESTS_DEADLINE, "")),
    )


_KMS_VARIABLES = (ENV_CERT_FILE, ENV_KEY_FILE, ENV_CAPATH, ENV_KEY_NAME, ENV_API_KEY)


def kms_settings_from_env(env: Mapping[str, str]) -> KMSSettings | None:
    """The KMS from MINIO_KMS_KES_* (None when no endpoint is set); ConfigError names the
    variable that is missing or wrong."""
    if not env.get(ENV_ENDPOINT, "").strip():
        stray = [name for name in _KMS_VARIABLES if env.get(name)]
        if stray:
            raise ConfigError(f"{stray[0]} is set but {ENV_ENDPOINT} is not: set the KES "
                              "endpoint(s) too, or unset the MINIO_KMS_KES_* variables")
        return None
    try:
        kes = KESConfig.from_env(env)
        cache = DataKeyCacheConfig.from_env(env)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if not kes.key_name:
        raise ConfigError(f"{ENV_KEY_NAME} is not set: it names the KMS default key")
    if not valid_key_name(kes.key_name):
        raise ConfigError(f"{ENV_KEY_NAME}={kes.key_name!r} is not a valid KES key name")
    if not (kes.api_key or kes.cert_file):
        raise ConfigError(f"{ENV_CERT_FILE} and {ENV_KEY_FILE} (or {ENV_API_KEY}) are "
                          "required to authenticate to KES")
    for name, value in ((ENV_CERT_FILE, kes.cert_file), (ENV_KEY_FILE, kes.key_file),
                        (ENV_CAPATH, kes.capath)):
        if value and not Path(value).exists():
            raise ConfigError(f"{name}: {value} does not exist")
    try:
        client_ssl_context(kes)
    except (OSError, ValueError) as exc:  # ssl.SSLError is an OSError
        raise ConfigError(f"{ENV_CERT_FILE}/{ENV_KEY_FILE}/{ENV_CAPATH}: cannot load: "
                          f"{getattr(exc, 'reason', None) or exc}") from None
    return KMSSettings(kes, cache)


def _requests_max(text: str) -> int:
    text = text.strip() or "0"
    if not text.isdigit():
        raise ConfigError(f"{ENV_REQUESTS_MAX}={text!r} must be a whole number (0: from memory)")
    return int(text)


_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_DURATION_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def parse_duration(text: str) -> float:
    """Seconds of a Go-style duration as MinIO takes it (`10s`, `500ms`, `2m`), or a number
    of seconds; ValueError when it is neither."""
    match = _DURATION.match(text.strip())
    if match is None:
        raise ValueError(text)
    return float(match.group(1)) * _DURATION_UNIT[match.group(2)]


def _requests_deadline(text: str) -> float:
    if not text.strip():
        return 10.0
    try:
        value = parse_duration(text)
    except ValueError:
        raise ConfigError(f"{ENV_REQUESTS_DEADLINE}={text!r} must be a duration such as 10s, "
                          "500ms or 2m") from None
    if value > 3600:
        raise ConfigError(f"{ENV_REQUESTS_DEADLINE} must be at most 1h")
    return value


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    text = env.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{name} must be a number of seconds, not {text!r}") from None
    if not 0 <= value <= 3600:
        raise ConfigError(f"{name} must be between 0 and 3600 seconds")
    return value


def _secret_env(env: Mapping[str, str], name: str) -> str | None:
    if env.get(name):
        return env[name]
    file_name = env.get(name + SECRET_FILE_SUFFIX)
    if not file_name:
        return None
    path = Path(file_name)
    try:
        mode = path.stat().st_mode
        if mode & stat.S_IROTH:
            raise ConfigError(f"{name}{SECRET_FILE_SUFFIX}: {path} is world-readable; "
                              "chmod o-r it")
        return path.read_text().strip()
    except OSError as exc:
        raise ConfigError(f"{name}{SECRET_FILE_SUFFIX}: cannot read {path}: "
                          f"{exc.strerror}") from exc


def _credentials(env: Mapping[str, str]) -> tuple[str, str]:
    access = _secret_env(env, ENV_ROOT_USER) or _secret_env(env, ENV_ACCESS_KEY)
    secret = _secret_env(env, ENV_ROOT_PASSWORD) or _secret_env(env, ENV_SECRET_KEY)
    if not access or not secret:
        raise ConfigError(f"credentials missing: set {ENV_ROOT_USER} and {ENV_ROOT_PASSWORD}")
    if len(access) < 3:
        raise ConfigError(f"{ENV_ROOT_USER} must be at least 3 characters long")
    if len(secret) < 8:
        raise ConfigError(f"{ENV_ROOT_PASSWORD} must be at least 8 characters long")
    return access, secret


def _address(flag: str, value: str | None) -> tuple[str, int] | None:
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{flag} {value!r} is not host:port")
    return host.strip("[]") or "0.0.0.0", int(port)


def _path(value: str | None, flag: str) -> Path | None:
    if not value:
        return None
    path = Path(value)
    if not path.exists():
        raise ConfigError(f"{flag}: {path} does not exist")
    return path


_EC_RE = re.compile(r"^EC:(\d{1,2})$")


def _parity(value: str | None) -> int | None:
    if value is None or value.strip() == "":
        return None
    match = _EC_RE.match(value.strip())
    if not match:
        raise ConfigError(f"{ENV_STORAGE_CLASS_STANDARD}={value!r} must look like EC:2")
    return int(match.group(1))


def _check_parity(parity: int | None, topology_path: Path) -> None:
    try:
        set_size = Topology.load(topology_path).set_size
    except TopologyError as exc:
        raise ConfigError(str(exc)) from exc
    if parity is not None and parity > set_size // 2:
        raise ConfigError(f"{ENV_STORAGE_CLASS_STANDARD}=EC:{parity} is more than half of the "
                          f"erasure set size {set_size}")


_DOMAIN_RE = re.compile(r"^[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:\d+)?$")


def _domains(value: str) -> tuple[str, ...]:
    domains = tuple(d.strip().lower() for d in value.split(",") if d.strip())
    for domain in domains:
        if not _DOMAIN_RE.match(domain):
            raise ConfigError(f"{ENV_DOMAIN}: {domain!r} is not a domain name")
    return domains


def _region(value: str | None) -> str:
    region = (value or DEFAULT_REGION).strip()
    if not re.match(r"^[a-z0-9-]{1,63}$", region):
        raise ConfigError(f"{ENV_REGION}: {region!r} is not a region name")
    return region
