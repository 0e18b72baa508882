"""Assembles the gateway: the KMS (KES pool), the object layer chosen by the configuration, and
the S3 application.

`build_object_layer` is the single seam where a backend is chosen: `--memory` gives the
in-process `MemoryObjectLayer` (development and tests only); otherwise the erasure-coded layer
over the storage nodes named by `--topology` (gateway/objects/erasure_layer.py), with its
healing service (`layer.healer`: durable queue in `--state-dir`, worker, optional scanner),
encrypting with keys from the KES pool of `MINIO_KMS_KES_*` (gateway/kes_kms.py).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from gateway.config import ConfigError, GatewayConfig, KMSSettings
from gateway.crypto.cache import CachingKMS
from gateway.crypto.envelope import ObjectEncryption
from gateway.kes_kms import KESKMS
from gateway.objects.api import ObjectLayer
from gateway.objects.errors import EncryptionError, KMSUnavailable
from gateway.ops import Operations
from gateway.s3.server import S3Application
from kes.client import KESClient

__all__ = ["Gateway", "build_app", "build_encryption", "build_gateway", "build_kms",
           "build_object_layer"]

log = logging.getLogger("tessera.gateway")


def build_kms(settings: KMSSettings | None) -> KESKMS | None:
    """The KES pool as a KMS, or None when no KMS is configured."""
    if settings is None:
        return None
    return KESKMS(KESClient(settings.kes), settings.default_key)


def build_encryption(settings: KMSSettings | None, kms: KESKMS | None) -> ObjectEncryption:
    """Seals and opens object keys through the data-key cache the settings allow."""
    if kms is None or settings is None:
        return ObjectEncryption(None)  # SSE-C only
    return ObjectEncryption(CachingKMS(kms, settings.cache), scope=settings.cache.scope)


def build_object_layer(config: GatewayConfig,
                       encryption: ObjectEncryption | None = None) -> ObjectLayer:
    """The object layer this gateway serves from."""
    if config.memory:
        from gateway.objects.memory import MemoryObjectLayer

        return MemoryObjectLayer()
    from gateway.healing import HealConfig, HealService, open_heal_queue
    from gateway.healing.config import ConfigError as HealConfigError
    from gateway.objects.erasure_layer import build_erasure_layer

    if config.topology is None:
        raise ConfigError("--topology is required (or --memory for a development gateway)")
    try:
        heal_config = HealConfig.from_env(scanner=config.scanner)
    except HealConfigError as exc:
        raise ConfigError(str(exc)) from exc
    queue = open_heal_queue(config.state_dir, heal_config)
    layer = build_erasure_layer(config.topology, node_cert=config.node_cert,
                                node_key=config.node_key, node_ca=config.node_ca,
                                parity=config.parity, heal_queue=queue, encryption=encryption)
    layer.healer = HealService(layer.ctx, queue, heal_config)
    return layer


def build_app(config: GatewayConfig, layer: ObjectLayer | None = None) -> S3Application:
    return build_gateway(config, layer).app


@dataclass
class Gateway:
    """One gateway process's parts; `start` before serving, `close` after."""

    config: GatewayConfig
    app: S3Application
    layer: ObjectLayer
    kms: KESKMS | None

    async def start(self) -> None:
        """MinIO's start-up check of the KMS: the default key must exist (it is created when
        it does not). Raises ConfigError (one line) when KES cannot be used."""
        if self.kms is None or self.config.kms is None:
            log.info("KMS: not configured (SSE-C only; SSE-S3/SSE-KMS answer 501)")
            return
        kes = self.config.kms.kes
        try:
            await self.kms.ensure_default_key()
        except KMSUnavailable as exc:
            raise ConfigError(f"KMS: {exc}") from None
        except EncryptionError as exc:
            raise ConfigError(f"KMS: {exc}") from None
        log.info("KMS: KES %s, default key %s; %s%s", ", ".join(kes.endpoints), kes.key_name,
                 self.config.kms.cache.describe(),
                 "; auto-encryption on" if self.config.auto_encryption else "")

    async def close(self) -> None:
        await self.app.ops.close()
        if self.kms is not None:
            await self.kms.aclose()


def build_gateway(config: GatewayConfig, layer: ObjectLayer | None = None) -> Gateway:
    kms = build_kms(config.kms)
    encryption = build_encryption(config.kms, kms)
    if layer is None:
        layer = build_object_layer(config, encryption)
    cached = encryption.kms
    ops = Operations(config, layer, kes_config=config.kms.kes if config.kms else None,
                     kes=kms.client if kms is not None else None, kms_cache=cached,
                     server=_server_name(config))
    return Gateway(config, S3Application(config, layer, cached, ops), layer, kms)


def _server_name(config: GatewayConfig) -> str:
    """How this gateway names itself in metrics: its first listening address."""
    address = config.listen or config.tls_listen
    return f"{address[0]}:{address[1]}" if address else ""
