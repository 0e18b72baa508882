"""Assembles the gateway: the object layer chosen by the configuration, and the S3 application.

`build_object_layer` is the single seam where a backend is chosen: `--memory` gives the
in-process `MemoryObjectLayer` (development and tests only); otherwise the erasure-coded layer
over the storage nodes named by `--topology` (gateway/objects/erasure_layer.py), with its
healing service (`layer.healer`: durable queue in `--state-dir`, worker, optional scanner).
"""

from __future__ import annotations

from gateway.config import ConfigError, GatewayConfig
from gateway.objects.api import ObjectLayer
from gateway.s3.server import S3Application

__all__ = ["build_app", "build_object_layer"]


def build_object_layer(config: GatewayConfig) -> ObjectLayer:
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
                                parity=config.parity, heal_queue=queue)
    layer.healer = HealService(layer.ctx, queue, heal_config)
    return layer


def build_app(config: GatewayConfig, layer: ObjectLayer | None = None) -> S3Application:
    return S3Application(config, layer if layer is not None else build_object_layer(config))
