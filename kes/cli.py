"""`python -m kes ...`: run the server, make identities, and talk to a KES pool from a shell."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path

from .errors import KESError

__all__ = ["main"]

_COMMANDS = ("server", "identity", "key", "status")


def _server_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kes [server]",
                                description="Run a KES-compatible key server.")
    p.add_argument("--config", help="KES YAML config file")
    p.add_argument("--addr", help="listen address host:port (overrides the config)")
    p.add_argument("--key", dest="tls_key", help="server private key (PEM)")
    p.add_argument("--cert", dest="tls_cert", help="server certificate (PEM)")
    p.add_argument("--ca", dest="tls_ca", help="client CA file or directory")
    p.add_argument("--auth", choices=("on", "off"),
                   help="on: verify client certs against --ca; off: pin identities only")
    p.add_argument("--admin", help="admin identity (hex)")
    p.add_argument("--keystore-dir", help="use a directory keystore here")
    return p


def run_server(argv: list[str]) -> int:
    from .config import ConfigError, ServerConfig, load_config
    from .identity import is_identity
    from .server import KeyServer

    args = _server_parser().parse_args(argv)
    try:
        config = load_config(args.config) if args.config else None
        if config is None:
            if not (args.tls_key and args.tls_cert):
                raise ConfigError("tls.key: required (give --config, or --key and --cert)")
            config = ServerConfig()
        changes = {"address": args.addr, "tls_key": args.tls_key, "tls_cert": args.tls_cert,
                   "tls_ca": args.tls_ca}
        if args.auth:
            changes["tls_auth"] = args.auth == "on"
        if args.admin:
            changes["admin"] = args.admin.lower() if is_identity(args.admin) else None
        if args.keystore_dir:
            changes.update(keystore="fs", fs_path=args.keystore_dir)
        path = args.config

        def reread() -> ServerConfig:
            return load_config(path).with_overrides(**changes) if path else config

        server = KeyServer(config.with_overrides(**changes), reread)
    except ConfigError as exc:
        print(f"kes: config error: {exc}", file=sys.stderr)
        return 2
    server.serve()
    return 0


def _client_args(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--server", default=env("MINIO_KMS_KES_ENDPOINT") or env("KES_SERVER"),
                   help="endpoint URL(s), comma-separated [$MINIO_KMS_KES_ENDPOINT]")
    p.add_argument("--cert", default=env("MINIO_KMS_KES_CERT_FILE") or env("KES_CLIENT_CERT"),
                   help="client certificate [$MINIO_KMS_KES_CERT_FILE]")
    p.add_argument("--key", default=env("MINIO_KMS_KES_KEY_FILE") or env("KES_CLIENT_KEY"),
                   help="client private key [$MINIO_KMS_KES_KEY_FILE]")
    p.add_argument("--ca", default=env("MINIO_KMS_KES_CAPATH"),
                   help="CA file or directory for the server cert [$MINIO_KMS_KES_CAPATH]")
    p.add_argument("--api-key", default=env("MINIO_KMS_KES_API_KEY") or env("KES_API_KEY"),
                   help="kes:v1:... instead of --cert/--key [$MINIO_KMS_KES_API_KEY]")


def _tool_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m kes")
    sub = p.add_subparsers(dest="command", required=True)
    ident = sub.add_parser("identity", help="create or inspect identities")
    isub = ident.add_subparsers(dest="action", required=True)
    new = isub.add_parser("new", help="private key + certificate (prints the identity); "
                                      "without --cert/--key: a new API key")
    new.add_argument("name", nargs="?", default="kes-client", help="certificate common name")
    new.add_argument("--cert", help="write the certificate here")
    new.add_argument("--key", help="write the private key here")
    new.add_argument("--ca-cert", help="sign with this CA (default: self-signed)")
    new.add_argument("--ca-key", help="the CA's private key")
    new.add_argument("--host", action="append", default=[],
                     help="also a server certificate for this DNS name / IP (repeatable)")
    new.add_argument("--days", type=int, default=365)
    new.add_argument("--force", action="store_true", help="overwrite existing files")
    of = isub.add_parser("of", help="print the identity of a certificate or an API key")
    of.add_argument("cert", help="PEM certificate file, or a kes:v1: API key")
    key = sub.add_parser("key", help="create, list, describe and delete keys")
    ksub = key.add_subparsers(dest="action", required=True)
    for action in ("create", "describe", "delete"):
        a = ksub.add_parser(action)
        a.add_argument("name")
        _client_args(a)
    ls = ksub.add_parser("list")
    ls.add_argument("prefix", nargs="?", default="")
    _client_args(ls)
    st = sub.add_parser("status", help="status of every server of the pool")
    _client_args(st)
    return p


def _identity(args: argparse.Namespace) -> int:
    from .identity import api_key_identity, identity_of_pem, new_api_key, new_identity

    if args.action == "of":
        of = api_key_identity if args.cert.startswith("kes:v1:") else identity_of_pem
        print(of(args.cert))
        return 0
    if not args.cert and not args.key:
        api_key = new_api_key()
        print(f"API key:  {api_key}\nIdentity: {api_key_identity(api_key)}")
        return 0
    if not (args.cert and args.key):
        raise KESError("--cert and --key go together")
    for path in (args.cert, args.key):
        if Path(path).exists() and not args.force:
            raise KESError(f"{path} exists (use --force to overwrite)")
    if bool(args.ca_cert) != bool(args.ca_key):
        raise KESError("--ca-cert and --ca-key go together")
    print(new_identity(args.name, Path(args.cert), Path(args.key),
                       ca_cert=Path(args.ca_cert) if args.ca_cert else None,
                       ca_key=Path(args.ca_key) if args.ca_key else None,
                       hosts=tuple(args.host), days=args.days))
    return 0


async def _remote(args: argparse.Namespace) -> int:
    from .client import KESClient, KESConfig

    if not args.server:
        raise KESError("no server: give --server or set MINIO_KMS_KES_ENDPOINT")
    config = KESConfig(tuple(s.strip().rstrip("/") for s in args.server.split(",") if s.strip()),
                       cert_file="" if args.api_key else args.cert or "",
                       key_file="" if args.api_key else args.key or "", capath=args.ca or "",
                       call_timeout=10.0, api_key=args.api_key or "")
    async with KESClient(config) as kes:
        if args.command == "status":
            return await _status(kes, config)
        if args.action == "create":
            await kes.create_key(args.name)
        elif args.action == "delete":
            await kes.delete_key(args.name)
        elif args.action == "describe":
            info = await kes.describe_key(args.name)
            print(json.dumps(info.__dict__, indent=2))
        else:
            for name in await kes.list_keys(args.prefix):
                print(name)
    return 0


async def _status(kes: object, config: object) -> int:
    from .client import KESClient, KESConfig

    assert isinstance(config, KESConfig) and isinstance(kes, KESClient)
    failed = 0
    for url in config.endpoints:
        async with KESClient(KESConfig((url,), config.cert_file, config.key_file,
                                       capath=config.capath, call_timeout=5.0,
                                       api_key=config.api_key)) as one:
            try:
                doc = await one.status()
                state = "keystore unreachable" if doc.get("keystore_unreachable") else "ok"
                print(f"{url}  {state}  version {doc.get('version')}  uptime {doc.get('uptime')}s")
            except KESError as exc:
                failed += 1
                print(f"{url}  DOWN  {exc}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in _COMMANDS or argv[0] == "server":
        return run_server(argv[1:] if argv and argv[0] == "server" else argv)
    args = _tool_parser().parse_args(argv)
    try:
        if args.command == "identity":
            return _identity(args)
        return asyncio.run(_remote(args))
    except (KESError, OSError, ValueError) as exc:
        text = str(exc)
        print(text if text.startswith("kes: ") else f"kes: {text}", file=sys.stderr)
        return 1
