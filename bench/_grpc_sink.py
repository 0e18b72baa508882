"""A do-nothing Storage server for bench/node.py: the same gRPC + mTLS transport as a node,
without disk or checks, so that node figures can be read against bare gRPC on this machine.

Run as `python -m bench._grpc_sink PORT CA CERT KEY`; it serves until killed.
"""

from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc

from proto import storage_pb2 as pb
from proto import storage_pb2_grpc


class Sink(storage_pb2_grpc.StorageServicer):
    def WriteShard(self, messages, context):
        total = 0
        for message in messages:
            total += len(message.block.data)
        return pb.WriteShardReply(bytes=total)

    def ReadShard(self, request, context):
        block = pb.ShardBlock(data=os.urandom(request.part_number), hash=bytes(16))
        for _ in range(request.block_count):
            yield block


def main(port: str, ca: str, cert: str, key: str) -> None:
    server = grpc.server(ThreadPoolExecutor(16), options=[
        ("grpc.max_receive_message_length", 64 << 20), ("grpc.so_reuseport", 0)])
    storage_pb2_grpc.add_StorageServicer_to_server(Sink(), server)
    creds = grpc.ssl_server_credentials([(Path(key).read_bytes(), Path(cert).read_bytes())],
                                        root_certificates=Path(ca).read_bytes(),
                                        require_client_auth=True)
    server.add_secure_port(f"127.0.0.1:{port}", creds)
    server.start()
    server.wait_for_termination()


if __name__ == "__main__":
    main(*sys.argv[1:5])
