"""Builds a running key server from a ServerConfig: TLS context, keystore, cache, API, listener."""

from __future__ import annotations

import contextlib
import datetime
import json
import signal
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from OpenSSL import SSL

from .api import API, ROUTES
from .auth import Authorizer
from .cache import KeyCache
from .config import ConfigError, ServerConfig
from .crypto import new_key
from .errors import KeyExists
from .handlers import State
from .http_server import TLSHTTPServer
from .keyfile import encode_key
from .keystore import FsKeyStore, KeyStore, KeystoreError, MemKeyStore

__all__ = ["KeyServer", "build_tls_context", "open_keystore"]

# OpenSSL: allow partial writes and a retried write from a different buffer address
_SSL_MODES = 0x1 | 0x2


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_tls_context(config: ServerConfig, *, require_cert: bool = True) -> SSL.Context:
    """Server TLS (>= 1.2, HTTP/1.1 ALPN). Client certificates: verified against tls_ca when
    tls_auth is on; otherwise any certificate is accepted and only its public key pins the
    identity (KES's default, needed for self-signed API-key clients)."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_mode(_SSL_MODES)
    _load_certificate(ctx, config)
    mode = SSL.VERIFY_PEER | (SSL.VERIFY_FAIL_IF_NO_PEER_CERT if require_cert else 0)
    if config.tls_auth:
        if not config.tls_ca:
            raise ConfigError("tls.ca: required when tls.auth is on")
        ca = Path(config.tls_ca)
        try:
            ctx.load_verify_locations(str(ca) if ca.is_file() else None,
                                      str(ca) if ca.is_dir() else None)
            if ca.is_file():
                ctx.load_client_ca(str(ca).encode())
        except SSL.Error as exc:
            raise ConfigError(f"tls.ca: cannot load {ca}: {exc}") from exc
        ctx.set_verify(mode, lambda _conn, _cert, _err, _depth, ok: bool(ok))
    else:
        ctx.set_verify(mode, lambda *_args: True)
    ctx.set_session_id(b"tessera-kes")
    ctx.set_alpn_select_callback(_select_alpn)
    return ctx


def _select_alpn(_conn: SSL.Connection, offered: list[bytes]) -> bytes:
    return b"http/1.1" if b"http/1.1" in offered else SSL.NO_OVERLAPPING_PROTOCOLS


def _load_certificate(ctx: SSL.Context, config: ServerConfig) -> None:
    try:
        pem = Path(config.tls_cert).read_bytes()
        certs = x509.load_pem_x509_certificates(pem)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"tls.cert: cannot load {config.tls_cert}: {exc}") from exc
    try:
        san = certs[0].extensions.get_extension_for_class(x509.SubjectAlternativeName)
        if not list(san.value):
            raise x509.ExtensionNotFound("empty", san.oid)
    except x509.ExtensionNotFound:
        raise ConfigError("tls.cert: the server certificate has no DNS or IP SAN") from None
    password = config.tls_password.encode() or None
    try:
        key = load_pem_private_key(Path(config.tls_key).read_bytes(), password)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigError(f"tls.key: cannot load {config.tls_key}: {exc}") from exc
    ctx.use_certificate(certs[0])
    for extra in certs[1:]:
        ctx.add_extra_chain_cert(extra)
    ctx.use_privatekey(key)
    try:
        ctx.check_privatekey()
    except SSL.Error:
        raise ConfigError("tls.key: does not match the certificate in tls.cert") from None


def _require_cert(config: ServerConfig) -> bool:
    # a skip_auth route must be reachable without a certificate (answered in HTTP instead)
    return not any(o.skip_auth for o in config.api.values())


def _mtimes(config: ServerConfig) -> tuple[float, ...]:
    out = []
    for path in (config.tls_cert, config.tls_key):
        try:
            out.append(Path(path).stat().st_mtime)
        except OSError:
            out.append(0.0)
    return tuple(out)


def open_keystore(config: ServerConfig) -> KeyStore:
    if config.keystore == "fs":
        return FsKeyStore(config.fs_path)
    if config.keystore == "aws":
        from .aws_keystore import AwsKeyStore

        return AwsKeyStore(config.aws)
    return MemKeyStore()


class KeyServer:
    """A configured server; `start()` listens in a background thread, `serve()` blocks."""

    def __init__(self, config: ServerConfig,
                 reload_config: Callable[[], ServerConfig] | None = None):
        self.config = config
        self._reload_config = reload_config
        self._tls = build_tls_context(config, require_cert=_require_cert(config))
        self._tls_files = _mtimes(config)
        self._tls_checked = time.monotonic()
        self.store = open_keystore(config)
        self.cache = KeyCache(self.store, config.cache)
        self.state = State(config, self.store, self.cache,
                           Authorizer(config.admin, config.policies), routes=ROUTES,
                           log_error=self._log_error,
                           audit=self._audit if config.log_audit else lambda _r: None)
        host, _, port = config.address.rpartition(":")
        try:
            self.http = TLSHTTPServer((host.strip("[]") or "0.0.0.0", int(port)),
                                      self._context, API(self.state), log=_log)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"address: cannot listen on {config.address}: {exc}") from exc
        self._thread: threading.Thread | None = None

    def _context(self) -> SSL.Context:
        """The TLS context for a new connection; rebuilt when the certificate or key files
        change (checked at most every 10 s), so renewed certificates need no restart."""
        now = time.monotonic()
        if now - self._tls_checked >= 10:
            self._tls_checked = now
            mtimes = _mtimes(self.config)
            if mtimes != self._tls_files:
                try:
                    self._tls = build_tls_context(self.config,
                                                  require_cert=_require_cert(self.config))
                    self._tls_files = mtimes
                    _log("kes: reloaded the TLS certificate")
                except ConfigError as exc:
                    _log(f"kes: keeping the old TLS certificate: {exc}")
        return self._tls

    def reload(self) -> None:
        """SIGHUP: re-read the config; swap policies, admin, API settings and TLS files.
        (The address, keystore and cache settings need a restart.) A bad config is logged and
        the running one kept."""
        if self._reload_config is None:
            return
        try:
            config = self._reload_config()
            tls = build_tls_context(config, require_cert=_require_cert(config))
        except ConfigError as exc:
            _log(f"kes: reload failed, keeping the running config: {exc}")
            return
        self.config = replace(config, address=self.config.address,
                              keystore=self.config.keystore, fs_path=self.config.fs_path,
                              aws=self.config.aws, cache=self.config.cache)
        self._tls, self._tls_files = tls, _mtimes(config)
        self.state.authorizer = Authorizer(config.admin, config.policies)
        self.state.config = self.config
        try:
            self.create_predefined_keys()
        except KeystoreError as exc:
            _log(f"kes: cannot create the configured keys: {exc}")
        _log(f"kes: reloaded the config ({len(config.policies)} policies)")

    @property
    def address(self) -> str:
        host, port = self.http.server_address
        return f"{host}:{port}"

    def _log_error(self, message: str) -> None:
        self.state.metrics.error_events += 1
        if self.config.log_error:
            _log(f"kes: {message}")

    def _audit(self, record: dict) -> None:
        self.state.metrics.audit_events += 1
        print(json.dumps(record, separators=(",", ":")), flush=True)

    def create_predefined_keys(self) -> None:
        """Keys listed under `keys:` exist after start-up (an existing key is fine)."""
        for name in self.config.keys:
            with contextlib.suppress(KeyExists):
                self.store.create(name, encode_key(new_key(self.config.admin or "")))

    def start(self) -> None:
        try:
            self.create_predefined_keys()
        except KeystoreError as exc:
            _log(f"kes: cannot create the configured keys: {exc}")
        self.cache.start()
        self._thread = threading.Thread(target=self.http.serve_forever, name="kes-accept",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.http.shutdown()
        self.cache.stop()
        self.store.close()

    def serve(self) -> None:
        """Run until SIGTERM or SIGINT; SIGHUP reloads the config."""
        done, hangup = threading.Event(), threading.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_a: done.set())
        signal.signal(signal.SIGHUP, lambda *_a: hangup.set())
        self.start()
        started = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        _log(f"kes: {started} listening on https://{self.address} "
             f"(keystore {self.config.keystore}, "
             f"tls.auth {'on' if self.config.tls_auth else 'off'}, "
             f"admin {'set' if self.config.admin else 'disabled'})")
        while not done.wait(0.2):
            if hangup.is_set():
                hangup.clear()
                self.reload()
        self.stop()
