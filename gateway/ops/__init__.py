"""The gateway's operations surface: health endpoints, Prometheus metrics, the access log."""

from gateway.ops.operations import Operations

__all__ = ["Operations"]
