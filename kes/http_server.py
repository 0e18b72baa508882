"""A threaded HTTPS/1.1 server on pyOpenSSL that hands each request its peer certificates.

Why not uvicorn or the stdlib `ssl`: KES authenticates by pinning the client's public key and by
default accepts self-signed client certificates, which needs a TLS verify callback (pyOpenSSL),
and the handler needs the peer certificate of every request. One thread serves one keep-alive
connection over a non-blocking socket; every read and write waits with poll() against a deadline,
so a slow or silent client costs one idle thread until its deadline, never a hang.

Deadlines (Go net/http as KES configures it): TLS handshake 10 s, request header 5 s from its
first byte, idle keep-alive 90 s, body read and response write within the route's timeout.
"""

from __future__ import annotations

import contextlib
import errno
import http
import select
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.utils import formatdate
from urllib.parse import unquote

from cryptography import x509
from OpenSSL import SSL

__all__ = ["Request", "Response", "TLSHTTPServer"]

HANDSHAKE_TIMEOUT = 10.0
HEADER_TIMEOUT = 5.0
IDLE_TIMEOUT = 90.0
MAX_HEADER = 1 << 20
DRAIN_LIMIT = 4 << 20
_READ_CHUNK = 1 << 16
_PLAIN_HTTP = (b"GET ", b"POST", b"PUT ", b"HEAD", b"DELE", b"OPTI", b"PATC")


@dataclass
class Request:
    """One parsed request; `path` is the percent-decoded path (Go's URL.Path)."""

    method: str
    target: str
    path: str
    headers: dict[str, str]
    body: bytes
    peer_certs: list[x509.Certificate]
    remote: str
    body_too_large: bool = False


@dataclass
class Response:
    status: int
    body: bytes = b""
    content_type: str | None = None
    headers: list[tuple[str, str]] = field(default_factory=list)


class App:
    """What the server calls: limits for a path (before the body is read), then the handler."""

    def limits(self, method: str, path: str) -> tuple[int, float]:
        """(max body bytes, timeout seconds) of the route serving `path`."""
        raise NotImplementedError

    def handle(self, request: Request) -> Response:
        raise NotImplementedError


class _Closed(Exception):
    """The peer went away, a deadline passed or the stream is unusable: drop the connection."""


class _Connection:
    """Deadline-bound reads and writes over one TLS connection."""

    def __init__(self, sock: socket.socket, tls: SSL.Connection):
        self.sock, self.tls = sock, tls
        self.buf = bytearray()
        self._in = select.poll()
        self._in.register(sock.fileno(), select.POLLIN)
        self._out = select.poll()
        self._out.register(sock.fileno(), select.POLLOUT)

    def _wait(self, poller: select.poll, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not poller.poll(remaining * 1000):
            raise _Closed("deadline")

    def handshake(self, deadline: float) -> None:
        while True:
            try:
                self.tls.do_handshake()
                return
            except SSL.WantReadError:
                self._wait(self._in, deadline)
            except SSL.WantWriteError:
                self._wait(self._out, deadline)
            except (SSL.Error, OSError) as exc:
                raise _Closed("handshake failed") from exc

    def fill(self, deadline: float) -> None:
        """Read at least one more byte into the buffer."""
        while True:
            try:
                data = self.tls.recv(_READ_CHUNK)
            except SSL.WantReadError:
                self._wait(self._in, deadline)
                continue
            except SSL.WantWriteError:
                self._wait(self._out, deadline)
                continue
            except (SSL.Error, OSError) as exc:
                raise _Closed("read failed") from exc
            if not data:
                raise _Closed("eof")
            self.buf += data
            return

    def read_exact(self, n: int, deadline: float) -> bytes:
        while len(self.buf) < n:
            self.fill(deadline)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read_line(self, deadline: float, limit: int = 4096) -> bytes:
        while (i := self.buf.find(b"\r\n")) < 0:
            if len(self.buf) > limit:
                raise _Closed("line too long")
            self.fill(deadline)
        line = bytes(self.buf[:i])
        del self.buf[:i + 2]
        return line

    def write(self, data: bytes, deadline: float) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = self.tls.send(view[:_READ_CHUNK])
                view = view[sent:]
            except SSL.WantWriteError:
                self._wait(self._out, deadline)
            except SSL.WantReadError:
                self._wait(self._in, deadline)
            except (SSL.Error, OSError) as exc:
                raise _Closed("write failed") from exc


class TLSHTTPServer:
    """Accepts TLS connections on `address` and serves each in its own thread."""

    def __init__(self, address: tuple[str, int], context: Callable[[], SSL.Context], app: App,
                 *, max_connections: int = 1024, log: Callable[[str], None] = print):
        self.context = context
        self.app = app
        self.log = log
        self._slots = threading.BoundedSemaphore(max_connections)
        self._sock = socket.create_server(address, backlog=1024, reuse_port=False)
        self.server_address = self._sock.getsockname()[:2]
        self._closing = threading.Event()

    def serve_forever(self) -> None:
        threading.stack_size(512 * 1024)
        while not self._closing.is_set():
            try:
                sock, addr = self._sock.accept()
            except OSError as exc:
                if self._closing.is_set():
                    return
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    time.sleep(0.05)  # out of descriptors: back off, don't spin
                continue
            if not self._slots.acquire(blocking=False):
                sock.close()
                continue
            threading.Thread(target=self._serve, args=(sock, f"{addr[0]}:{addr[1]}"),
                             daemon=True).start()

    def shutdown(self) -> None:
        self._closing.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    # ---- one connection ----

    def _serve(self, sock: socket.socket, remote: str) -> None:
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            sock.setblocking(False)
            if self._plain_http(sock):
                return
            tls = SSL.Connection(self.context(), sock)
            tls.set_accept_state()
            conn = _Connection(sock, tls)
            conn.handshake(time.monotonic() + HANDSHAKE_TIMEOUT)
            certs = _peer_certificates(tls)
            while self._serve_one(conn, certs, remote):
                pass
            with contextlib.suppress(SSL.Error, OSError):
                tls.shutdown()
        except _Closed:
            pass
        except Exception as exc:  # never let one connection take the server down
            self.log(f"kes: connection from {remote} failed: {type(exc).__name__}: {exc}")
        finally:
            sock.close()
            self._slots.release()

    def _plain_http(self, sock: socket.socket) -> bool:
        """Answer a plain-HTTP request on the TLS port the way Go does, then close."""
        poller = select.poll()
        poller.register(sock.fileno(), select.POLLIN)
        if not poller.poll(HANDSHAKE_TIMEOUT * 1000):
            return True
        try:
            head = sock.recv(4, socket.MSG_PEEK)
        except OSError:
            return True
        if head not in _PLAIN_HTTP:
            return False
        with contextlib.suppress(OSError):
            sock.send(b"HTTP/1.0 400 Bad Request\r\n\r\n"
                      b"Client sent an HTTP request to an HTTPS server.\n")
        return True

    def _serve_one(self, conn: _Connection, certs: list[x509.Certificate], remote: str) -> bool:
        """Read one request, answer it; False when the connection must close."""
        if not conn.buf:
            conn.fill(time.monotonic() + IDLE_TIMEOUT)
        header_deadline = time.monotonic() + HEADER_TIMEOUT
        line = conn.read_line(header_deadline, limit=MAX_HEADER)
        try:
            method, target, version = line.decode("latin-1").split(" ")
        except ValueError:
            conn.write(_raw(400, b"400 Bad Request"), time.monotonic() + 5)
            return False
        headers = _read_headers(conn, header_deadline)
        path = unquote(target.split("?", 1)[0])
        max_body, timeout = self.app.limits(method, path)
        deadline = time.monotonic() + timeout
        body, too_large = _read_body(conn, headers, max_body, deadline)
        keep = _keep_alive(version, headers) and not too_large
        request = Request(method, target, path, headers, body, certs, remote, too_large)
        response = self.app.handle(request)
        conn.write(_serialise(response, keep), deadline)
        return keep


def _read_headers(conn: _Connection, deadline: float) -> dict[str, str]:
    headers: dict[str, str] = {}
    size = 0
    while line := conn.read_line(deadline, limit=MAX_HEADER):
        size += len(line)
        if size > MAX_HEADER or b":" not in line:
            raise _Closed("bad header")
        name, value = line.decode("latin-1").split(":", 1)
        headers[name.strip().lower()] = value.strip()
    return headers


def _read_body(conn: _Connection, headers: dict[str, str], limit: int,
               deadline: float) -> tuple[bytes, bool]:
    """The body, or b"" and True when it exceeds `limit`. An oversized body of up to
    DRAIN_LIMIT bytes is read and dropped, so that a client still sending it gets the answer;
    a larger one is left unread and the connection closes after the answer."""
    if headers.get("transfer-encoding", "").lower() == "chunked":
        return _read_chunked(conn, limit, deadline)
    try:
        length = int(headers.get("content-length", "0"))
    except ValueError:
        raise _Closed("bad content-length") from None
    if length < 0:
        raise _Closed("bad content-length")
    if length > max(limit, 0):
        if length <= DRAIN_LIMIT:
            while True:
                dropped = min(length, len(conn.buf))
                del conn.buf[:dropped]
                length -= dropped
                if not length:
                    break
                conn.fill(deadline)
        return b"", True
    if length and headers.get("expect", "").lower() == "100-continue":
        conn.write(b"HTTP/1.1 100 Continue\r\n\r\n", deadline)
    return conn.read_exact(length, deadline), False


def _read_chunked(conn: _Connection, limit: int, deadline: float) -> tuple[bytes, bool]:
    body = bytearray()
    while True:
        try:
            size = int(conn.read_line(deadline).split(b";")[0], 16)
        except ValueError:
            raise _Closed("bad chunk") from None
        if size == 0:
            while conn.read_line(deadline):  # trailers
                pass
            return bytes(body), False
        if len(body) + size > limit:
            return b"", True
        body += conn.read_exact(size, deadline)
        conn.read_line(deadline)


def _keep_alive(version: str, headers: dict[str, str]) -> bool:
    connection = headers.get("connection", "").lower()
    if version == "HTTP/1.0":
        return connection == "keep-alive"
    return connection != "close"


def _serialise(response: Response, keep: bool) -> bytes:
    try:
        reason = http.HTTPStatus(response.status).phrase
    except ValueError:
        reason = ""
    lines = [f"HTTP/1.1 {response.status} {reason}"]
    if response.content_type:
        lines.append(f"Content-Type: {response.content_type}")
    lines += [f"{k}: {v}" for k, v in response.headers]
    lines.append(f"Date: {formatdate(usegmt=True)}")
    lines.append(f"Content-Length: {len(response.body)}")
    if not keep:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + response.body


def _raw(status: int, body: bytes) -> bytes:
    return _serialise(Response(status, body, "text/plain; charset=utf-8"), False)


def _peer_certificates(tls: SSL.Connection) -> list[x509.Certificate]:
    """Leaf first, then whatever chain the client sent (the server side excludes the leaf)."""
    leaf = tls.get_peer_certificate(as_cryptography=True)
    if leaf is None:
        return []
    certs = [leaf]
    for cert in tls.get_peer_cert_chain(as_cryptography=True) or []:
        if cert != leaf:
            certs.append(cert)
    return certs
