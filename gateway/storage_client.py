"""The gateway's view of one storage node: the `NodeClient` seam and its gRPC (mTLS) client.

Every call carries a deadline; streams also have an idle timeout per message, so a paused node
costs one bounded wait, never a stall. Failures surface as `NodeCallError` (status code plus
the node's `tessera-reason`); `is_transport` tells "the node did not answer" from an answer.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import grpc
import grpc.aio

from common.shard_wire import decode_blocks
from proto import storage_pb2 as pb
from proto import storage_pb2_grpc as pb_grpc

__all__ = [
    "REASON_KEY",
    "TRANSPORT_CODES",
    "GrpcNodeClient",
    "NodeCallError",
    "NodeClient",
    "NodeTLS",
    "Timeouts",
]

REASON_KEY = "tessera-reason"
# Codes that say "the node did not answer", as opposed to an answer about the data.
TRANSPORT_CODES = frozenset({
    grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED, grpc.StatusCode.UNKNOWN,
})
_MAX_MESSAGE = 64 * 1024 * 1024
_STREAM_WINDOW = 1024 * 1024
_METHOD = "/tessera.storage.v1.Storage/"


class NodeCallError(Exception):
    """One node's call failed: `code` is the gRPC status, `reason` the node's tessera-reason."""

    def __init__(self, node: str, code: grpc.StatusCode, reason: str = "", detail: str = ""):
        super().__init__(f"{node}: {code.name}{' ' + reason if reason else ''}"
                         f"{' (' + detail + ')' if detail else ''}")
        self.node = node
        self.code = code
        self.reason = reason
        self.detail = detail

    @property
    def is_transport(self) -> bool:
        """The node did not answer (down, paused, timed out), rather than answered an error."""
        return self.code in TRANSPORT_CODES

    def short(self) -> str:
        """`node-3: DEADLINE_EXCEEDED` or `node-1: NOT_FOUND NoSuchKey` for quorum messages."""
        return f"{self.node}: {self.code.name}{' ' + self.reason if self.reason else ''}"


@dataclass(frozen=True)
class Timeouts:
    """Seconds the gateway waits for nodes."""

    unary: float = 10.0  # one metadata call (ReadMeta, CommitObject, ...)
    idle: float = 10.0  # one message of a shard stream, either direction
    stream: float = 6 * 3600.0  # a whole shard stream (5 GiB at a slow 250 KB/s)


@dataclass(frozen=True)
class NodeTLS:
    """The gateway's client certificate for mTLS to nodes, and the cluster CA."""

    ca: bytes
    cert: bytes
    key: bytes

    @classmethod
    def from_files(cls, ca: str | Path, cert: str | Path, key: str | Path) -> NodeTLS:
        return cls(Path(ca).read_bytes(), Path(cert).read_bytes(), Path(key).read_bytes())


class NodeClient(Protocol):
    """One storage node. Requests and replies are `proto.storage_pb2` messages; every failure
    raises NodeCallError."""

    name: str

    async def unary(self, method: str, request: Any, *, deadline: float) -> Any:
        """Any unary RPC of the Storage service by name, e.g. "ReadMeta". A
        "WriteShardOnce" request may come already serialized (bytes, from shard_wire)."""
        ...

    def stream(self, method: str, request: Any, *, deadline: float,
               idle_timeout: float) -> AsyncIterator[Any]:
        """A server-streaming RPC ("ReadShard", "ListObjects"), message by message.
        "ReadShardBlocks" yields each message as a list of (data, hash) blocks, the data
        as memoryviews (common/shard_wire.py)."""
        ...

    async def write_shard(self, messages: AsyncIterator[pb.WriteShardMessage | bytes], *,
                          deadline: float, idle_timeout: float) -> pb.WriteShardReply:
        """Sends a header then shard blocks; returns the node's reply after the last one.
        A message may come already serialized (bytes, e.g. from shard_wire)."""
        ...

    async def close(self) -> None: ...


def _serialize_write(message: pb.WriteShardMessage | pb.WriteShardOnceRequest | bytes) -> bytes:
    return message if isinstance(message, bytes) else message.SerializeToString()


def _reason_of(exc: grpc.aio.AioRpcError) -> str:
    for key, value in exc.trailing_metadata() or ():
        if key == REASON_KEY:
            return value.decode() if isinstance(value, bytes) else str(value)
    return ""


class GrpcNodeClient:
    """A NodeClient over one grpc.aio channel (created lazily inside the running loop)."""

    def __init__(self, name: str, address: str, tls: NodeTLS | None):
        self.name = name
        self.address = address
        self._tls = tls
        self._channel: grpc.aio.Channel | None = None
        self._stub: pb_grpc.StorageStub | None = None
        self._bulk: dict[str, Any] = {}  # the shard RPCs with their own codecs

    def _get_stub(self) -> pb_grpc.StorageStub:
        if self._stub is None:
            options = [("grpc.max_receive_message_length", _MAX_MESSAGE),
                       ("grpc.max_send_message_length", _MAX_MESSAGE),
                       ("grpc.enable_retries", 0),
                       # a fixed 1 MiB window per stream: with BDP probing the windows grow
                       # until a 64 MiB GET held ~50 MiB of not-yet-read shards in the core
                       ("grpc.http2.bdp_probe", 0),
                       ("grpc.http2.lookahead_bytes", _STREAM_WINDOW),
                       # gRPC's reconnect backoff grows to 120 s by default, and calls on a
                       # channel in backoff fail at once: a node back from an outage would
                       # stay unreachable long after it answers again
                       ("grpc.initial_reconnect_backoff_ms", 100),
                       ("grpc.min_reconnect_backoff_ms", 100),
                       ("grpc.max_reconnect_backoff_ms", 1000)]
            if self._tls is None:
                self._channel = grpc.aio.insecure_channel(self.address, options=options)
            else:
                creds = grpc.ssl_channel_credentials(self._tls.ca, self._tls.key, self._tls.cert)
                self._channel = grpc.aio.secure_channel(self.address, creds, options=options)
            self._stub = pb_grpc.StorageStub(self._channel)
            self._bulk = {
                "WriteShard": self._channel.stream_unary(
                    _METHOD + "WriteShard", request_serializer=_serialize_write,
                    response_deserializer=pb.WriteShardReply.FromString),
                "WriteShardOnce": self._channel.unary_unary(
                    _METHOD + "WriteShardOnce", request_serializer=_serialize_write,
                    response_deserializer=pb.WriteShardReply.FromString),
                "ReadShardBlocks": self._channel.unary_stream(
                    _METHOD + "ReadShardBlocks",
                    request_serializer=pb.ReadShardRequest.SerializeToString,
                    response_deserializer=decode_blocks),
            }
        return self._stub

    def _call(self, method: str) -> Any:
        stub = self._get_stub()
        return self._bulk.get(method) or getattr(stub, method)

    def _failed(self, code: grpc.StatusCode, reason: str = "", detail: str = "") -> NodeCallError:
        return NodeCallError(self.name, code, reason, detail)

    def _translate(self, exc: grpc.aio.AioRpcError) -> NodeCallError:
        return self._failed(exc.code(), _reason_of(exc), exc.details() or "")

    async def unary(self, method: str, request: Any, *, deadline: float) -> Any:
        rpc = self._call(method)
        try:
            reply = await rpc(request, timeout=deadline)
        except grpc.aio.AioRpcError as exc:
            raise self._translate(exc) from exc
        return reply

    async def stream(self, method: str, request: Any, *, deadline: float,
                     idle_timeout: float) -> AsyncIterator[Any]:
        call = self._call(method)(request, timeout=deadline)
        try:
            while True:
                try:
                    async with asyncio.timeout(idle_timeout):
                        message = await call.read()
                except TimeoutError:
                    raise self._failed(grpc.StatusCode.DEADLINE_EXCEEDED, "",
                                       f"no message for {idle_timeout:g}s") from None
                except grpc.aio.AioRpcError as exc:
                    raise self._translate(exc) from exc
                if message is grpc.aio.EOF:
                    return
                yield message
        finally:
            call.cancel()

    async def write_shard(self, messages: AsyncIterator[pb.WriteShardMessage | bytes], *,
                          deadline: float, idle_timeout: float) -> pb.WriteShardReply:
        call = self._call("WriteShard")(timeout=deadline)
        try:
            async for message in messages:
                async with asyncio.timeout(idle_timeout):
                    await call.write(message)
            async with asyncio.timeout(idle_timeout):
                await call.done_writing()
                reply = await call
        except TimeoutError:
            call.cancel()
            raise self._failed(grpc.StatusCode.DEADLINE_EXCEEDED, "",
                               f"shard stream stalled for {idle_timeout:g}s") from None
        except grpc.aio.AioRpcError as exc:
            raise self._translate(exc) from exc
        except asyncio.InvalidStateError:
            raise await self._ended_early(call, idle_timeout) from None
        except BaseException:
            call.cancel()
            raise
        return reply

    async def _ended_early(self, call: grpc.aio.StreamUnaryCall,
                           idle_timeout: float) -> NodeCallError:
        """The node ended a write stream before we finished sending (e.g. no such bucket):
        its status says why."""
        try:
            async with asyncio.timeout(idle_timeout):
                await call
        except grpc.aio.AioRpcError as exc:
            return self._translate(exc)
        except TimeoutError:
            call.cancel()
        return self._failed(grpc.StatusCode.UNKNOWN, "", "write stream ended early")

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None
            self._stub = None
            self._bulk = {}
