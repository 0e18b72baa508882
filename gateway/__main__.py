"""`python -m gateway`: read the configuration, build the S3 application, serve HTTP and/or
HTTPS from one process (two uvicorn servers on one uvloop event loop). SIGINT/SIGTERM stop it
gracefully; SIGHUP reloads the KES client and HTTPS certificates (gateway/ops/reload.py)."""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from typing import TYPE_CHECKING

from gateway.config import ConfigError, GatewayConfig, load_config
from gateway.ops.reload import CredentialReloader, ServedCertificate

if TYPE_CHECKING:
    from gateway.app import Gateway

log = logging.getLogger("tessera.gateway")


def _servers(config: GatewayConfig, app: object) -> list:
    import uvicorn

    common = dict(loop="none", http="httptools", lifespan="off", access_log=False,
                  server_header=False, log_config=None, timeout_keep_alive=30,
                  timeout_graceful_shutdown=5,
                  h11_max_incomplete_event_size=64 * 1024)
    servers = []
    if config.listen:
        host, port = config.listen
        servers.append(uvicorn.Server(uvicorn.Config(app, host=host, port=port, **common)))
    if config.tls_listen:
        host, port = config.tls_listen
        servers.append(uvicorn.Server(uvicorn.Config(
            app, host=host, port=port, ssl_certfile=str(config.tls_cert),
            ssl_keyfile=str(config.tls_key), **common)))
    return servers


async def _serve(config: GatewayConfig) -> int:
    from gateway.app import build_gateway

    gateway = build_gateway(config)
    try:
        await gateway.start()
        return await _run(config, gateway)
    finally:
        await gateway.close()


async def _run(config: GatewayConfig, gateway: Gateway) -> int:
    app = gateway.app
    servers = _servers(config, app)

    def stop() -> None:
        for server in servers:
            server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    loop.add_signal_handler(signal.SIGHUP, _reloader(config, gateway, servers).reload)
    # uvicorn's own signal capture would let only one of the two servers see a signal
    for server in servers:
        server.capture_signals = _no_signal_capture  # type: ignore[method-assign]
    listening = [f"{scheme}://{address[0]}:{address[1]}"
                 for scheme, address in (("http", config.listen), ("https", config.tls_listen))
                 if address]
    log.info("gateway starting: S3 on %s (%s backend)", ", ".join(listening),
             "in-memory DEVELOPMENT" if config.memory else "erasure-coded")
    healer = getattr(app.layer, "healer", None)
    if healer is not None:
        healer.start()
    try:
        await asyncio.gather(*(server.serve() for server in servers))
    finally:
        if healer is not None:
            await healer.close()
    return 0 if all(server.started for server in servers) else 1


def _reloader(config: GatewayConfig, gateway: Gateway, servers: list) -> CredentialReloader:
    served = []
    if config.tls_listen and config.tls_cert and config.tls_key:
        https = servers[-1]  # _servers puts the HTTPS server last
        served.append(ServedCertificate(lambda: getattr(https.config, "ssl", None),
                                        config.tls_cert, config.tls_key))
    return CredentialReloader(kes=gateway.kms, kes_probe=gateway.app.ops.kms_probe,
                              kes_config=config.kms.kes if config.kms else None, served=served)


class _no_signal_capture:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main(argv: list[str] | None = None) -> int:
    try:
        config = load_config(argv)
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    import uvloop

    try:
        return uvloop.run(_serve(config))
    except ConfigError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
