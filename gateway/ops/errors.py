"""How a failed probe is named in a health answer: one short line, never a traceback."""

from __future__ import annotations

__all__ = ["short_error"]


def short_error(exc: BaseException) -> str:
    """"connection refused" when that is the root cause, else the first line of the error
    (at most 160 characters)."""
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__
    return (str(exc) or type(exc).__name__).splitlines()[0][:160]
