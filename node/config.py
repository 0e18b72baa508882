"""The storage node's configuration: flags, their environment defaults, and their checks."""

from __future__ import annotations

import argparse
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

__all__ = ["ConfigError", "NodeConfig", "parse_args"]

# Environment variables: the default of the flag beside each.
ENV_DATA = "TESSERA_NODE_DATA"
ENV_LISTEN = "TESSERA_NODE_LISTEN"
ENV_NODE_ID = "TESSERA_NODE_ID"
ENV_TLS_CERT = "TESSERA_NODE_TLS_CERT"
ENV_TLS_KEY = "TESSERA_NODE_TLS_KEY"
ENV_CLIENT_CA = "TESSERA_NODE_CLIENT_CA"
ENV_INSECURE = "TESSERA_NODE_INSECURE"
ENV_SERVER = "TESSERA_NODE_SERVER"
ENV_WORKERS = "TESSERA_NODE_WORKERS"
ENV_VERSION_GRACE = "TESSERA_NODE_VERSION_GRACE"
ENV_TMP_GRACE = "TESSERA_NODE_TMP_GRACE"
ENV_MARKER_GRACE = "TESSERA_NODE_MARKER_GRACE"
ENV_GC_INTERVAL = "TESSERA_NODE_GC_INTERVAL"
ENV_DIRECT_IO = "TESSERA_NODE_DIRECT_IO"

_NODE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class ConfigError(ValueError):
    """A flag or the environment is unusable; the message is one line for the operator."""


@dataclass(frozen=True)
class NodeConfig:
    """Everything a node needs to start. Durations are seconds."""

    data_dir: Path  # shard files, tmp/ and the SQLite index live here
    listen: str  # host:port of the gRPC endpoint
    node_id: str  # the name in logs and Stat (e.g. "node-3")
    tls_cert: Path | None = None  # server certificate (PEM); None only with insecure
    tls_key: Path | None = None
    client_ca: Path | None = None  # clients must present a certificate signed by this CA
    insecure: bool = False  # plain TCP, no client certificates (only when asked explicitly)
    server: str = "sync"  # "sync": thread-pool gRPC server (measured faster); "aio": asyncio
    workers: int = 64  # concurrent RPCs served (each open stream holds one)
    version_grace: float = 900.0  # superseded versions are kept this long before collection
    tmp_grace: float = 3600.0  # written-but-uncommitted shard data is dropped after this
    marker_grace: float = 86400.0  # a delete marker with nothing under it is dropped after this
    gc_interval: float = 30.0  # how often the background collector runs
    direct_io: bool = True  # shard files bypass the page cache where the disk allows it

    @property
    def host_port(self) -> tuple[str, int]:
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        # one line, not argparse's usage block: the launcher shows the last log lines
        self.exit(2, f"node: {message} (see python -m node --help)\n")


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None:
        return default
    try:
        return float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number of seconds") from None


def _env_switch(name: str, default: bool) -> bool:
    raw = os.environ.get(name)
    if raw is None:
        return default
    if raw.lower() in ("1", "on", "true", "yes"):
        return True
    if raw.lower() in ("0", "off", "false", "no"):
        return False
    raise ConfigError(f"{name}={raw!r}: use on or off")


def _parser() -> argparse.ArgumentParser:
    env = os.environ.get
    p = _Parser(prog="python -m node", description="Tessera storage node (gRPC, mTLS).")
    p.add_argument("--data", default=env(ENV_DATA), help=f"data directory [{ENV_DATA}]")
    p.add_argument("--listen", default=env(ENV_LISTEN), help=f"host:port [{ENV_LISTEN}]")
    p.add_argument("--node-id", default=env(ENV_NODE_ID), help=f"node name [{ENV_NODE_ID}]")
    p.add_argument("--tls-cert", default=env(ENV_TLS_CERT), help=f"PEM cert [{ENV_TLS_CERT}]")
    p.add_argument("--tls-key", default=env(ENV_TLS_KEY), help=f"PEM key [{ENV_TLS_KEY}]")
    p.add_argument("--client-ca", default=env(ENV_CLIENT_CA),
                   help=f"CA that signs client certificates [{ENV_CLIENT_CA}]")
    p.add_argument("--insecure", action="store_true",
                   default=env(ENV_INSECURE, "") in ("1", "true", "on"),
                   help=f"plain TCP without TLS [{ENV_INSECURE}]")
    p.add_argument("--server", choices=("sync", "aio"), default=env(ENV_SERVER, "sync"),
                   help=f"gRPC server flavour [{ENV_SERVER}, default sync]")
    p.add_argument("--workers", type=int, default=env(ENV_WORKERS, "64"),
                   help=f"concurrent RPCs [{ENV_WORKERS}, default 64]")
    return p


def _require(value: str | None, flag: str) -> str:
    if not value:
        raise ConfigError(f"{flag} is required")
    return value


def _check_listen(listen: str) -> str:
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"--listen {listen!r} is not host:port")
    return listen


def _check_tls(args: argparse.Namespace) -> tuple[Path | None, Path | None, Path | None]:
    given = [args.tls_cert, args.tls_key, args.client_ca]
    if args.insecure:
        if any(given):
            raise ConfigError("--insecure cannot be combined with --tls-cert/--tls-key/--client-ca")
        return None, None, None
    if not all(given):
        raise ConfigError("--tls-cert, --tls-key and --client-ca are required (or --insecure)")
    paths = tuple(Path(p) for p in given)
    for flag, path in zip(("--tls-cert", "--tls-key", "--client-ca"), paths, strict=True):
        if not path.is_file():
            raise ConfigError(f"{flag} {path}: no such file")
    return paths  # type: ignore[return-value]


def parse_args(argv: list[str] | None = None) -> NodeConfig:
    """Flags (with environment defaults) to a checked NodeConfig; ConfigError when unusable."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    node_id = _require(args.node_id, "--node-id")
    if not _NODE_ID.match(node_id):
        raise ConfigError(f"--node-id {node_id!r}: use letters, digits, '.', '_', '-'")
    try:
        workers = int(args.workers)
    except ValueError:
        raise ConfigError(f"--workers {args.workers!r} is not a number") from None
    if workers < 4:
        raise ConfigError("--workers must be at least 4")
    cert, key, ca = _check_tls(args)
    return NodeConfig(
        data_dir=Path(_require(args.data, "--data")).absolute(),
        listen=_check_listen(_require(args.listen, "--listen")),
        node_id=node_id,
        tls_cert=cert,
        tls_key=key,
        client_ca=ca,
        insecure=args.insecure,
        server=args.server,
        workers=workers,
        version_grace=_env_float(ENV_VERSION_GRACE, 900.0),
        tmp_grace=_env_float(ENV_TMP_GRACE, 3600.0),
        marker_grace=_env_float(ENV_MARKER_GRACE, 86400.0),
        gc_interval=_env_float(ENV_GC_INTERVAL, 30.0),
        direct_io=_env_switch(ENV_DIRECT_IO, True),
    )
