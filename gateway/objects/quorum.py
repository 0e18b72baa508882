"""The one quorum fan-out used by every multi-node call, and the reduction of node errors.

`fan_out` runs one call per node concurrently under a single deadline and returns every
node's outcome; `reduce_errors` turns a failed quorum into the object-layer error that best
explains it (the dominant answer when a quorum of nodes agree on it, e.g. "no such bucket";
otherwise a retryable quorum error naming each node's failure).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from gateway.objects import errors as oe
from gateway.storage_client import NodeCallError

__all__ = [
    "FanOut",
    "NodeResult",
    "fan_out",
    "object_error",
    "reduce_errors",
]

T = TypeVar("T")

# (status code, tessera-reason) -> object-layer error. Reason "" matches any reason.
_ANSWERS: dict[tuple[grpc.StatusCode, str], type[oe.ObjectLayerError]] = {
    (grpc.StatusCode.NOT_FOUND, "NoSuchBucket"): oe.BucketNotFound,
    (grpc.StatusCode.NOT_FOUND, "NoSuchKey"): oe.ObjectNotFound,
    (grpc.StatusCode.NOT_FOUND, "NoSuchVersion"): oe.VersionNotFound,
    (grpc.StatusCode.NOT_FOUND, "NoSuchUpload"): oe.UploadNotFound,
    (grpc.StatusCode.NOT_FOUND, "NoSuchPart"): oe.InvalidPart,
    (grpc.StatusCode.ALREADY_EXISTS, ""): oe.BucketAlreadyExists,
    (grpc.StatusCode.FAILED_PRECONDITION, "BucketNotEmpty"): oe.BucketNotEmpty,
    (grpc.StatusCode.INVALID_ARGUMENT, ""): oe.InvalidInput,
    (grpc.StatusCode.RESOURCE_EXHAUSTED, ""): oe.StorageFull,
}


def object_error(err: NodeCallError) -> type[oe.ObjectLayerError] | None:
    """The object-layer meaning of one node's answer, or None for a node failure."""
    return _ANSWERS.get((err.code, err.reason)) or _ANSWERS.get((err.code, ""))


@dataclass(frozen=True)
class NodeResult(Generic[T]):
    """One node's outcome: a value, or the error it failed with."""

    node: str
    value: T | None = None
    error: NodeCallError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass(frozen=True)
class FanOut(Generic[T]):
    """All nodes' outcomes of one fan-out, in the order the nodes were given."""

    results: tuple[NodeResult[T], ...]
    quorum: int

    @property
    def successes(self) -> list[NodeResult[T]]:
        return [r for r in self.results if r.ok]

    @property
    def failures(self) -> list[NodeResult[T]]:
        return [r for r in self.results if not r.ok]

    @property
    def ok(self) -> bool:
        return len(self.successes) >= self.quorum

    def values(self) -> dict[str, T]:
        return {r.node: r.value for r in self.results if r.ok}  # type: ignore[misc]

    def require(self, *, write: bool, what: str = "") -> FanOut[T]:
        """Self when the quorum was reached; otherwise raises (see reduce_errors)."""
        reduce_errors(self.results, self.quorum, write=write, what=what)
        return self


def _cancelled(node: str, why: str) -> NodeResult[Any]:
    return NodeResult(node, error=NodeCallError(node, grpc.StatusCode.DEADLINE_EXCEEDED, "", why))


_DETACHED: set[asyncio.Future[Any]] = set()  # calls left to finish on their own deadline


def _detach(task: asyncio.Future[Any]) -> None:
    """Let a call run to its own deadline: its outcome still reaches the node's health memory
    (a paused node gets sidelined) without the request waiting for it."""
    _DETACHED.add(task)

    def forget(t: asyncio.Future[Any]) -> None:
        _DETACHED.discard(t)
        if not t.cancelled():
            t.exception()  # retrieved: a failure here was already recorded as health

    task.add_done_callback(forget)


async def fan_out(
    nodes: Sequence[str],
    call: Callable[[str], Awaitable[T]],
    *,
    quorum: int,
    timeout: float,  # noqa: ASYNC109 -- one deadline shared by every node call
    done: Callable[[dict[str, NodeResult[T]]], bool] | None = None,
    poll: float = 0.02,
    detach: bool = False,
) -> FanOut[T]:
    """Run `call(node)` on every node concurrently for at most `timeout` seconds.

    `done`, when given, is consulted after each result and every `poll` seconds; returning
    True stops waiting. The calls still running are then cancelled, or with `detach` left to
    finish on their own deadline; either way they are reported as not awaited. Exceptions other
    than NodeCallError propagate: they are bugs, not node failures.
    """
    tasks = {asyncio.ensure_future(call(n)): n for n in nodes}
    finished: dict[str, NodeResult[T]] = {}
    stopped_early = False
    try:
        async with asyncio.timeout(timeout):
            pending = set(tasks)
            while pending:
                completed, pending = await asyncio.wait(
                    pending, timeout=poll if done is not None else None,
                    return_when=asyncio.FIRST_COMPLETED)
                for task in completed:
                    node = tasks[task]
                    exc = task.exception()
                    if isinstance(exc, NodeCallError):
                        finished[node] = NodeResult(node, error=exc)
                    elif exc is not None:
                        raise exc
                    else:
                        finished[node] = NodeResult(node, value=task.result())
                if done is not None and pending and done(finished):
                    stopped_early = True
                    break
    except TimeoutError:
        pass
    finally:
        for task in tasks:
            if not task.done():
                if stopped_early and detach:
                    _detach(task)
                else:
                    task.cancel()
    why = "not awaited" if stopped_early else f"no answer within {timeout:g}s"
    for node in nodes:
        if node not in finished:
            finished[node] = _cancelled(node, why)
    await asyncio.gather(*(t for t in tasks if t not in _DETACHED), return_exceptions=True)
    return FanOut(tuple(finished[n] for n in nodes), quorum)


def _summary(results: Sequence[NodeResult[Any]], quorum: int) -> str:
    good = sum(1 for r in results if r.ok)
    failed = ", ".join(r.error.short() for r in results if r.error is not None)
    return f"{good} of {len(results)} succeeded (quorum {quorum}); {failed}"


def reduce_errors(results: Sequence[NodeResult[Any]], quorum: int, *, write: bool,
                  what: str = "") -> None:
    """Returns when at least `quorum` results succeeded; otherwise raises the dominant error.

    An application answer (e.g. BucketNotFound) wins when at least `quorum` nodes gave it;
    lost quorum from full disks is StorageFull; anything else is InsufficientWrite/ReadQuorum
    with a message like "2 of 6 succeeded (quorum 4); node-3: DEADLINE_EXCEEDED, ...".
    """
    if sum(1 for r in results if r.ok) >= quorum:
        return
    answers = Counter(object_error(r.error) for r in results if r.error is not None)
    summary = _summary(results, quorum)
    prefix = f"{what}: " if what else ""
    for kind, count in answers.most_common():
        if kind is not None and kind is not oe.StorageFull and count >= quorum:
            detail = next((r.error.detail for r in results if r.error is not None
                           and object_error(r.error) is kind and r.error.detail), "")
            raise kind(f"{prefix}{detail or summary}")
    if answers and answers.most_common(1)[0][0] is oe.StorageFull:
        raise oe.StorageFull(f"{prefix}{summary}")
    quorum_error = oe.InsufficientWriteQuorum if write else oe.InsufficientReadQuorum
    raise quorum_error(f"{prefix}{summary}")
