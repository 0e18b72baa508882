"""The node's gRPC server: credentials, health service, and the sync (thread-pool) transport
that puts `StorageService` on the wire, turning every error into a status code + reason."""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from common import shard_wire
from proto import storage_pb2

from .config import ConfigError, NodeConfig
from .errors import REASON_KEY, DiskFull, DiskIOError, InternalError, NodeError, translate
from .service import StorageService

__all__ = ["SERVICE_NAME", "add_storage_handlers", "build_sync_server", "rpc_methods",
           "server_credentials", "server_options", "status_of"]

log = logging.getLogger("node.server")

SERVICE_NAME = "tessera.storage.v1.Storage"
MAX_MESSAGE = 64 * 1024 * 1024


def rpc_methods() -> list[tuple[str, bool, bool]]:
    """(name, client_streaming, server_streaming) of every Storage RPC."""
    service = storage_pb2.DESCRIPTOR.services_by_name["Storage"]
    return [(m.name, m.client_streaming, m.server_streaming) for m in service.methods]


# The bulk shard messages skip protobuf's copies (common/shard_wire.py): WriteShard requests
# arrive as shard_wire.WriteItem, ReadShardBlocks answers are lists of (data, hash).
_REQUEST_CODECS: dict[str, Callable[[bytes], object]] = {
    "WriteShard": shard_wire.decode_write_message,
    "WriteShardOnce": shard_wire.decode_write_once}
_RESPONSE_CODECS: dict[str, Callable[[object], bytes]] = {
    "ReadShardBlocks": shard_wire.encode_blocks}  # type: ignore[dict-item]


def add_storage_handlers(server: grpc.Server | grpc.aio.Server,
                         handlers: dict[str, Callable]) -> None:
    """Register the Storage service: `handlers` maps each RPC name to its behaviour; requests
    and replies are protobuf messages but for the bulk shard codecs above."""
    service = storage_pb2.DESCRIPTOR.services_by_name["Storage"]
    kinds = {(False, False): grpc.unary_unary_rpc_method_handler,
             (False, True): grpc.unary_stream_rpc_method_handler,
             (True, False): grpc.stream_unary_rpc_method_handler,
             (True, True): grpc.stream_stream_rpc_method_handler}
    table = {}
    for m in service.methods:
        request = getattr(storage_pb2, m.input_type.name)
        reply = getattr(storage_pb2, m.output_type.name)
        table[m.name] = kinds[m.client_streaming, m.server_streaming](
            handlers[m.name],
            request_deserializer=_REQUEST_CODECS.get(m.name, request.FromString),
            response_serializer=_RESPONSE_CODECS.get(m.name, reply.SerializeToString))
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(SERVICE_NAME,
                                                                          table),))
    server.add_registered_method_handlers(SERVICE_NAME, table)


def server_options() -> list[tuple[str, int]]:
    return [
        ("grpc.so_reuseport", 0),  # a busy port must fail, not be shared with another node
        ("grpc.max_receive_message_length", MAX_MESSAGE),
        ("grpc.max_send_message_length", MAX_MESSAGE),
        # let gateways keep idle channels alive with pings (and notice a dead node fast)
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.min_recv_ping_interval_without_data_ms", 5000),
        ("grpc.http2.max_ping_strikes", 0),
    ]


def server_credentials(config: NodeConfig) -> grpc.ServerCredentials | None:
    """mTLS credentials (client certificates required), or None with --insecure."""
    if config.insecure:
        return None
    assert config.tls_cert and config.tls_key and config.client_ca
    try:  # gRPC only notices a bad pair at the first handshake; say so at start instead
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(config.tls_cert, config.tls_key)
        ctx.load_verify_locations(config.client_ca)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"TLS files unusable ({config.tls_cert}, {config.tls_key}, "
                          f"{config.client_ca}): {exc}") from None
    return grpc.ssl_server_credentials(
        [(config.tls_key.read_bytes(), config.tls_cert.read_bytes())],
        root_certificates=config.client_ca.read_bytes(), require_client_auth=True)


def status_of(exc: BaseException, method: str) -> NodeError:
    """The NodeError to report for `exc`; disk and internal failures are logged here."""
    err = translate(exc)
    if isinstance(err, DiskFull):
        log.warning("%s: disk full", method)
    elif isinstance(err, InternalError):
        log.error("%s failed", method, exc_info=exc)
    elif isinstance(err, DiskIOError):
        log.error("%s: %s", method, err)
    return err


def _abort(context: grpc.ServicerContext, err: NodeError) -> None:
    context.set_trailing_metadata(((REASON_KEY, err.reason),))
    context.abort(err.code, str(err) or err.reason)


def _cancelled(context: grpc.ServicerContext, exc: BaseException) -> bool:
    return isinstance(exc, grpc.RpcError) or not context.is_active()


def _unary(name: str, fn: Callable) -> Callable:
    def handler(request, context):
        try:
            return fn(request)
        except Exception as exc:
            if _cancelled(context, exc):
                raise
            _abort(context, status_of(exc, name))
    return handler


def _server_stream(name: str, fn: Callable) -> Callable:
    def handler(request, context) -> Iterator:
        try:
            yield from fn(request)
        except Exception as exc:
            if _cancelled(context, exc):
                raise
            _abort(context, status_of(exc, name))
    return handler


def _client_cancelled(context: grpc.ServicerContext) -> bool:
    # grpc offers no public "was this RPC cancelled" once it has ended; its state says so.
    # Should the attribute ever go away this answers False (the write then waits for the
    # sweeper, and a commit of it still fails its shard_size check).
    state = getattr(context, "_state", None)
    return getattr(state, "client", None) == "cancelled"


def _write_shard(service: StorageService, name: str = "WriteShard") -> Callable:
    """WriteShard (or WriteShardOnce, its request as the stream's items): as `_unary`, plus
    dropping the staged write if the RPC ends cancelled.

    A client that cancels mid-stream can look to the handler like one that finished: the end
    of the messages arrives before the cancellation does."""
    def handler(messages, context):
        try:
            ingest, reply = service.write_shard(iter(messages))
        except Exception as exc:
            if _cancelled(context, exc):
                raise
            _abort(context, status_of(exc, name))
            return None

        def drop_if_cancelled() -> None:
            if _client_cancelled(context):
                service.drop_staged(ingest.write_key, ingest.file_id)

        if not context.add_callback(drop_if_cancelled):
            drop_if_cancelled()  # the RPC already ended
        return reply
    return handler


def build_sync_server(config: NodeConfig, service: StorageService,
                      health_servicer: health.HealthServicer) -> grpc.Server:
    """A started-later grpc.Server serving Storage and grpc.health.v1 on config.listen."""
    server = grpc.server(ThreadPoolExecutor(config.workers, thread_name_prefix="rpc"),
                         options=server_options())
    handlers = {}
    for name, _client_streaming, server_streaming in rpc_methods():
        fn = getattr(service, name)
        if name in ("WriteShard", "WriteShardOnce"):
            handlers[name] = _write_shard(service, name)
        else:
            handlers[name] = (_server_stream if server_streaming else _unary)(name, fn)
    add_storage_handlers(server, handlers)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    bind(server, config)
    return server


def _check_port_free(config: NodeConfig) -> None:
    """Fail with a one-line reason before gRPC logs its own multi-line bind error."""
    host, port = config.host_port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is fine
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise ConfigError(f"cannot listen on {config.listen}: {exc.strerror}") from None


def bind(server: grpc.Server | grpc.aio.Server, config: NodeConfig) -> None:
    creds = server_credentials(config)
    _check_port_free(config)
    try:
        if creds is None:
            port = server.add_insecure_port(config.listen)
        else:
            port = server.add_secure_port(config.listen, creds)
    except RuntimeError:
        port = 0
    if port == 0:
        raise ConfigError(f"cannot listen on {config.listen}: address in use or unavailable")


def new_health() -> health.HealthServicer:
    servicer = health.HealthServicer(experimental_non_blocking=True)
    return servicer


def set_serving(servicer: health.HealthServicer, serving: bool) -> None:
    status = (health_pb2.HealthCheckResponse.SERVING if serving
              else health_pb2.HealthCheckResponse.NOT_SERVING)
    for name in ("", SERVICE_NAME):
        servicer.set(name, status)
