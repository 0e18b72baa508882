"""The client's keep-alive pool against an in-process HTTP/1.1 server (plain TCP on loopback):
connection reuse, chunked and close-delimited bodies, a stale idle connection, a dead port."""

from __future__ import annotations

import asyncio

import pytest

from kes.transport import ConnectFailed, ExchangeFailed, KeepAlivePool


class _Server:
    """Answers each request with the next scripted raw response; counts connections."""

    def __init__(self, responses: list[bytes]):
        self.responses = responses
        self.connections = 0
        self.requests: list[bytes] = []
        self.writers: list[asyncio.StreamWriter] = []

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.writers.append(writer)
        try:
            while self.responses:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length")), 0)
                self.requests.append(head + await reader.readexactly(length))
                response = self.responses.pop(0)
                writer.write(response)
                await writer.drain()
                delimited = b"Content-Length" in response or b"chunked" in response
                if b"Connection: close" in response or not delimited:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


async def _serve(responses: list[bytes]) -> tuple[_Server, asyncio.Server, int]:
    script = _Server(responses)
    server = await asyncio.start_server(script.handle, "127.0.0.1", 0)
    return script, server, server.sockets[0].getsockname()[1]


def test_reuse_chunked_and_close_delimited() -> None:
    async def run() -> None:
        script, server, port = await _serve([
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: application/json\r\n\r\n{}",
            b"HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"4\r\nkey \r\n9\r\nnot found\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close",
        ])
        pool = KeepAlivePool(None)  # plain TCP for the test
        async with server:
            one = await pool.request("127.0.0.1", port, "POST", "/v1/key/generate/k", b'{"a":1}',
                                     {"Content-Type": "application/json"})
            assert (one.status, one.body, one.headers["content-type"]) == (
                200, b"{}", "application/json")
            two = await pool.request("127.0.0.1", port, "GET", "/v1/key/describe/k")
            assert (two.status, two.body) == (404, b"key not found")
            three = await pool.request("127.0.0.1", port, "GET", "/version")
            assert three.body == b"until close"
            assert script.connections == 1  # all three on one keep-alive connection
            assert script.requests[0].startswith(b"POST /v1/key/generate/k HTTP/1.1\r\n")
            assert b"Content-Length: 7\r\n" in script.requests[0]
            await pool.aclose()

    asyncio.run(run())


def test_stale_idle_connection_is_retried_once_on_a_new_one() -> None:
    async def run() -> None:
        script, server, port = await _serve([
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\na",
        ])
        pool = KeepAlivePool(None)
        async with server:
            await pool.request("127.0.0.1", port, "GET", "/a")
            script.responses.append(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb")
            # the server closed its side after answering (it had nothing left to send)
            await asyncio.sleep(0.05)
            reply = await pool.request("127.0.0.1", port, "GET", "/b")
            assert reply.body == b"b" and script.connections == 2
            await pool.aclose()

    asyncio.run(run())


def test_dead_port_and_garbage_answer() -> None:
    async def run() -> None:
        _, server, port = await _serve([b"NOT HTTP\r\n\r\n"])
        pool = KeepAlivePool(None)
        async with server:
            with pytest.raises(ExchangeFailed):
                await pool.request("127.0.0.1", port, "GET", "/x")
        server.close()
        await server.wait_closed()
        with pytest.raises(ConnectFailed):
            await pool.request("127.0.0.1", port, "GET", "/x")
        await pool.aclose()

    asyncio.run(run())
