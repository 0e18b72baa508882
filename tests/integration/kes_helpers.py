"""Raw HTTPS calls to a KES server, to check exact status codes, headers and bodies."""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def json(self):
        return json.loads(self.body)

    @property
    def message(self) -> str:
        return self.json["message"]


def tls_context(ca: Path, cert: Path | None, key: Path | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(ca))
    if cert and key:
        ctx.load_cert_chain(str(cert), str(key))
    return ctx


def call(address: str, method: str, path: str, ctx: ssl.SSLContext,
         body: bytes | dict | list | None = None, timeout: float = 10.0) -> Reply:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=timeout)
    try:
        data = json.dumps(body).encode() if isinstance(body, dict | list) else body
        conn.request(method, path, body=data)
        resp = conn.getresponse()
        return Reply(resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read())
    finally:
        conn.close()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text)




@contextlib.contextmanager
def kes_server(config: Path, address: str, ctx: ssl.SSLContext,
               timeout: float = 30.0) -> Iterator[subprocess.Popen]:
    """`python -m kes --config` as a real process; stopped by its pid however the test ends."""
    log = config.with_suffix(".log")
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "kes", "--config", str(config)],
                                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"kes exited: {log.read_text()}")
            try:
                if call(address, "GET", "/version", ctx, timeout=2).status == 200:
                    break
            except (OSError, ssl.SSLError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"kes not up after {timeout}s: {log.read_text()}")
            time.sleep(0.1)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
