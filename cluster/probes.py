"""Health probes for each role: is the process answering on its main endpoint?"""

from __future__ import annotations

import http.client
import ssl
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Probe", "probe_gateway", "probe_kes", "probe_node"]


@dataclass(frozen=True)
class Probe:
    ok: bool
    detail: str


def _client_tls(ca: Path, cert: Path, key: Path) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.load_cert_chain(str(cert), str(key))
    return ctx


def probe_node(address: str, ca: Path | None, cert: Path | None, key: Path | None,
               timeout: float = 2.0) -> Probe:
    """The standard gRPC health service of a storage node, over mTLS when certificates given."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    if ca and cert and key:
        creds = grpc.ssl_channel_credentials(ca.read_bytes(), key.read_bytes(), cert.read_bytes())
        channel = grpc.secure_channel(address, creds)
    else:
        channel = grpc.insecure_channel(address)
    try:
        reply = health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service=""), timeout=timeout
        )
        serving = reply.status == health_pb2.HealthCheckResponse.SERVING
        return Probe(serving, "serving" if serving else health_pb2.HealthCheckResponse.
                     ServingStatus.Name(reply.status).lower())
    except grpc.RpcError as exc:
        return Probe(False, exc.code().name.lower())
    finally:
        channel.close()


def _http_get(address: str, path: str, tls: ssl.SSLContext | None, timeout: float) -> Probe:
    host, port = address.rsplit(":", 1)
    conn: http.client.HTTPConnection
    if tls is None:
        conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    else:
        conn = http.client.HTTPSConnection(host, int(port), timeout=timeout, context=tls)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        resp.read()
        return Probe(resp.status == 200, f"HTTP {resp.status}")
    except (OSError, http.client.HTTPException) as exc:
        return Probe(False, type(exc).__name__ if not str(exc) else str(exc))
    finally:
        conn.close()


def probe_gateway(address: str, timeout: float = 2.0) -> Probe:
    """MinIO's liveness endpoint on the gateway's plain-HTTP S3 port."""
    return _http_get(address, "/minio/health/live", None, timeout)


def probe_kes(address: str, ca: Path, cert: Path, key: Path, timeout: float = 2.0) -> Probe:
    """KES's unauthenticated /version (the TLS handshake still presents a client cert)."""
    return _http_get(address, "/version", _client_tls(ca, cert, key), timeout)
