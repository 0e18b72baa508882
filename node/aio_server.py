"""The asyncio transport (grpc.aio) for `--server aio`.

Not the default: bench/node.py measures it against the sync server on every run, and the sync
server has been the faster one here. Every service call (disk and SQLite work) runs in a
thread pool; the event loop only moves messages.
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as health_aio

from .errors import REASON_KEY, InvalidArgument
from .server import (
    SERVICE_NAME,
    add_storage_handlers,
    bind,
    rpc_methods,
    server_options,
    status_of,
)
from .service import write_blocks, write_commit, write_header

if TYPE_CHECKING:
    from .app import Node

__all__ = ["serve_aio"]

_END = object()


async def _abort(context: grpc.aio.ServicerContext, exc: Exception, name: str) -> None:
    err = status_of(exc, name)
    await context.abort(err.code, str(err) or err.reason,
                        trailing_metadata=((REASON_KEY, err.reason),))


def _unary(name: str, fn: Callable, pool: ThreadPoolExecutor) -> Callable:
    async def handler(request, context):
        try:
            return await asyncio.get_running_loop().run_in_executor(pool, fn, request)
        except Exception as exc:
            await _abort(context, exc, name)
    return handler


def _server_stream(name: str, fn: Callable, pool: ThreadPoolExecutor) -> Callable:
    async def handler(request, context) -> AsyncIterator:
        loop = asyncio.get_running_loop()
        items = fn(request)
        try:
            while (item := await loop.run_in_executor(pool, next, items, _END)) is not _END:
                yield item
        except Exception as exc:
            await _abort(context, exc, name)
        finally:
            items.close()
    return handler


def _write_shard(service, pool: ThreadPoolExecutor) -> Callable:
    async def handler(messages, context):
        loop = asyncio.get_running_loop()
        ingest = None
        try:
            stream = aiter(messages)
            header = write_header(await anext(stream, None))
            ingest = await loop.run_in_executor(pool, service.begin_write, header)
            commit = None
            async for msg in stream:
                if commit is not None:
                    raise InvalidArgument("nothing may follow the commit of a WriteShard "
                                          "stream")
                commit = write_commit(msg)
                if commit is None:
                    await loop.run_in_executor(pool, ingest.add, write_blocks(msg))
            if commit is not None:
                ingest.check_commit(commit)
            # from here on a failure keeps the write staged (finish aborts its own failures)
            done, ingest = ingest, None
            return await loop.run_in_executor(pool, service.finish_write, done, commit)
        except BaseException as exc:
            if ingest is not None:
                ingest.abort()
            if isinstance(exc, Exception) and not isinstance(exc, grpc.aio.AbortError):
                await _abort(context, exc, "WriteShard")
            raise
    return handler


async def _serve(node: Node, announce: Callable[[Node], None]) -> None:
    pool = ThreadPoolExecutor(node.config.workers, thread_name_prefix="rpc")
    server = grpc.aio.server(options=server_options())
    handlers = {}
    for name, client_streaming, server_streaming in rpc_methods():
        fn = getattr(node.service, name)
        if client_streaming:
            handlers[name] = _write_shard(node.service, pool)
        elif server_streaming:
            handlers[name] = _server_stream(name, fn, pool)
        else:
            handlers[name] = _unary(name, fn, pool)
    add_storage_handlers(server, handlers)
    health = health_aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health, server)
    bind(server, node.config)
    await server.start()
    node.collector.start()
    for service in ("", SERVICE_NAME):
        await health.set(service, health_pb2.HealthCheckResponse.SERVING)
    announce(node)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await health.enter_graceful_shutdown()
    await server.stop(grace=2)
    pool.shutdown(wait=False, cancel_futures=True)


def serve_aio(node: Node, announce: Callable[[Node], None]) -> None:
    asyncio.run(_serve(node, announce))
