"""gRPC client choice for the gateway: grpc.aio on the event loop vs sync stubs in threads.

A sink/source Storage server (sync gRPC, mTLS, in its own process) takes WriteShard streams
and serves ReadShard streams; the client side runs the gateway's pattern: six concurrent shard
streams of 262,272-byte blocks (a 1 MiB block at 4+2), fed from / drained into an asyncio
loop. Rows: MB/s of shard payload and client CPU-seconds per GB, for each client style.
"""

from __future__ import annotations

import asyncio
import os
import queue
import subprocess
import sys
import tempfile
import time
from concurrent import futures
from pathlib import Path

import grpc
import grpc.aio

from proto import storage_pb2 as pb
from proto import storage_pb2_grpc as pb_grpc

__all__ = ["run"]

SHARD_BLOCK = 262_272
STREAMS = 6
BLOCKS = 48  # per stream: 6 x 48 x 262 KB = 75 MB per phase
_PAYLOAD = os.urandom(SHARD_BLOCK)


class _SinkSource(pb_grpc.StorageServicer):
    def WriteShard(self, request_iterator, context):
        blocks = size = 0
        for message in request_iterator:
            if message.HasField("block"):
                blocks += 1
                size += len(message.block.data)
        return pb.WriteShardReply(blocks=blocks, bytes=size)

    def ReadShard(self, request, context):
        block = pb.ShardBlock(data=_PAYLOAD, hash=b"0" * 16)
        for _ in range(request.block_count):
            yield block


def _serve(port: int, certs: Path) -> None:
    server = grpc.server(futures.ThreadPoolExecutor(16), options=[
        ("grpc.max_receive_message_length", 64 << 20)])
    pb_grpc.add_StorageServicer_to_server(_SinkSource(), server)
    creds = grpc.ssl_server_credentials(
        [((certs / "server.key").read_bytes(), (certs / "server.crt").read_bytes())],
        root_certificates=(certs / "ca.crt").read_bytes(), require_client_auth=True)
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    server.start()
    server.wait_for_termination()


def _credentials(certs: Path) -> grpc.ChannelCredentials:
    return grpc.ssl_channel_credentials((certs / "ca.crt").read_bytes(),
                                        (certs / "client.key").read_bytes(),
                                        (certs / "client.crt").read_bytes())


def _messages() -> list[pb.WriteShardMessage]:
    header = pb.WriteShardMessage(header=pb.ShardHeader(bucket="b", key="k", data_id="d"))
    block = pb.WriteShardMessage(block=pb.ShardBlock(data=_PAYLOAD, hash=b"0" * 16))
    return [header] + [block] * BLOCKS


async def _aio_phase(target: str, certs: Path, write: bool) -> None:
    channels = [grpc.aio.secure_channel(target, _credentials(certs)) for _ in range(STREAMS)]
    stubs = [pb_grpc.StorageStub(c) for c in channels]

    async def one_write(stub: pb_grpc.StorageStub) -> None:
        call = stub.WriteShard(timeout=60)
        for message in _messages():
            await call.write(message)
        await call.done_writing()
        await call

    async def one_read(stub: pb_grpc.StorageStub) -> None:
        call = stub.ReadShard(pb.ReadShardRequest(block_count=BLOCKS), timeout=60)
        async for _ in call:
            pass

    await asyncio.gather(*((one_write if write else one_read)(s) for s in stubs))
    for c in channels:
        await c.close()


async def _threads_phase(target: str, certs: Path, write: bool) -> None:
    """Sync stubs in threads, fed from / drained into the loop through queues."""
    loop = asyncio.get_running_loop()
    channels = [grpc.secure_channel(target, _credentials(certs)) for _ in range(STREAMS)]
    stubs = [pb_grpc.StorageStub(c) for c in channels]
    pool = futures.ThreadPoolExecutor(STREAMS)

    async def one_write(stub: pb_grpc.StorageStub) -> None:
        q: queue.Queue[pb.WriteShardMessage | None] = queue.Queue(4)

        def feed():
            while (m := q.get()) is not None:
                yield m

        done = loop.run_in_executor(pool, lambda: stub.WriteShard(feed(), timeout=60))
        for message in [*_messages(), None]:
            try:
                q.put_nowait(message)
            except queue.Full:
                await asyncio.to_thread(q.put, message)
        await done

    async def one_read(stub: pb_grpc.StorageStub) -> None:
        out: asyncio.Queue[object] = asyncio.Queue()

        def drain() -> None:
            for message in stub.ReadShard(pb.ReadShardRequest(block_count=BLOCKS), timeout=60):
                loop.call_soon_threadsafe(out.put_nowait, message)
            loop.call_soon_threadsafe(out.put_nowait, None)

        done = loop.run_in_executor(pool, drain)
        while await out.get() is not None:
            pass
        await done

    await asyncio.gather(*((one_write if write else one_read)(s) for s in stubs))
    pool.shutdown()
    for c in channels:
        c.close()


def _measure(phase, target: str, certs: Path, write: bool) -> tuple[float, float]:
    asyncio.run(phase(target, certs, write))  # warm-up: TLS handshakes, allocations
    best = (0.0, 0.0)
    for _ in range(2):
        wall, cpu = time.perf_counter(), time.process_time()
        asyncio.run(phase(target, certs, write))
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        megabytes = STREAMS * BLOCKS * SHARD_BLOCK / 1e6
        if megabytes / wall > best[0]:
            best = (megabytes / wall, cpu / (megabytes / 1000))
    return best


def _make_certs(directory: Path) -> None:
    from cluster.certs import ClusterCA

    ca = ClusterCA.open(directory)
    for name in ("server", "client"):
        pair = ca.issue(name)
        (directory / f"{name}.crt").write_bytes(pair.cert.read_bytes())
        (directory / f"{name}.key").write_bytes(pair.key.read_bytes())


def run() -> list[dict[str, object]]:
    """Rows: client style x direction -> shard MB/s and client CPU-seconds per GB."""
    import socket

    with tempfile.TemporaryDirectory() as tmp:
        certs = Path(tmp)
        _make_certs(certs)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server = subprocess.Popen([sys.executable, "-m", "bench.grpc_clients", "--serve",
                                   str(port), str(certs)])
        try:
            time.sleep(1.0)
            rows = []
            for style, phase in (("aio", _aio_phase), ("sync+threads", _threads_phase)):
                for write in (True, False):
                    mbps, cpu = _measure(phase, f"127.0.0.1:{port}", certs, write)
                    rows.append({"bench": "grpc-client", "style": style,
                                 "direction": "WriteShard" if write else "ReadShard",
                                 "MB/s": round(mbps), "client CPU-s/GB": round(cpu, 2)})
            return rows
        finally:
            server.terminate()
            server.wait(10)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        _serve(int(sys.argv[2]), Path(sys.argv[3]))
    else:
        for row in run():
            print(row)

