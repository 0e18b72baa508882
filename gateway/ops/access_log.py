"""The one structured line per request (logfmt: `name=value`, values quoted when needed), on
the `tessera.gateway.access` logger:

    id=18A2F3C0D1E2A3B4C5D60001 api=PutObject method=PUT bucket=photos key=2024/a.jpg
    status=200 code=- in=52311 out=0 ms=12.4 remote=127.0.0.1 tls=0

What is never in it: header values (Authorization, SSE-C keys, checksums), query values
(presigned URLs carry credentials and signatures there; only the names are logged), bodies.
"""

from __future__ import annotations

import logging
import re

__all__ = ["format_line", "log_request"]

access_log = logging.getLogger("tessera.gateway.access")

_NEEDS_QUOTES = re.compile(r"[^A-Za-z0-9\-_./:,@+%]")


def _value(text: str) -> str:
    if text and not _NEEDS_QUOTES.search(text):
        return text
    escaped = (text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
               .replace("\r", "\\r").replace("\t", "\\t"))
    # other control characters would break "one line per request" in terminals and parsers
    escaped = "".join(c if c >= " " else f"\\x{ord(c):02x}" for c in escaped)
    return f'"{escaped}"'


def format_line(fields: dict[str, object]) -> str:
    return " ".join(f"{name}={value}" if type(value) is int else f"{name}={_value(str(value))}"
                    for name, value in fields.items())


def log_request(fields: dict[str, object], level: int = logging.INFO) -> None:
    if access_log.isEnabledFor(level):
        access_log.log(level, "%s", format_line(fields))
