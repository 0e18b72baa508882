"""fan_out + reduce_errors: deadlines, early stop, the dominant error and its message."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from gateway.objects import errors as oe
from gateway.objects.quorum import NodeResult, fan_out, reduce_errors
from gateway.storage_client import NodeCallError

NODES = [f"node-{i}" for i in range(1, 7)]


def err(node: str, code: grpc.StatusCode, reason: str = "") -> NodeResult[object]:
    return NodeResult(node, error=NodeCallError(node, code, reason))


def test_fan_out_collects_values_errors_and_timeouts():
    async def call(node: str) -> str:
        if node == "node-2":
            raise NodeCallError(node, grpc.StatusCode.UNAVAILABLE)
        if node == "node-3":
            await asyncio.sleep(10)
        return node.upper()

    started = time.monotonic()
    out = asyncio.run(fan_out(NODES, call, quorum=4, timeout=0.2))
    assert time.monotonic() - started < 2
    assert out.ok and len(out.successes) == 4
    assert out.values()["node-1"] == "NODE-1"
    codes = {r.node: r.error.code for r in out.failures}
    assert codes == {"node-2": grpc.StatusCode.UNAVAILABLE,
                     "node-3": grpc.StatusCode.DEADLINE_EXCEEDED}
    assert [r.node for r in out.results] == NODES


def test_fan_out_stops_when_done():
    async def call(node: str) -> int:
        if node in ("node-5", "node-6"):
            await asyncio.sleep(10)
        return 1

    started = time.monotonic()
    out = asyncio.run(fan_out(NODES, call, quorum=4, timeout=5,
                              done=lambda results: sum(r.ok for r in results.values()) >= 4))
    assert time.monotonic() - started < 1
    assert len(out.successes) == 4 and "not awaited" in str(out.failures[0].error)


def test_reduce_errors_passes_with_quorum():
    results = [NodeResult(n) for n in NODES[:4]] + [err(n, grpc.StatusCode.UNAVAILABLE)
                                                     for n in NODES[4:]]
    reduce_errors(results, 4, write=True)


def test_reduce_errors_names_each_failure():
    results = [NodeResult(n) for n in NODES[:2]] + [
        err("node-3", grpc.StatusCode.DEADLINE_EXCEEDED),
        err("node-4", grpc.StatusCode.UNAVAILABLE),
        err("node-5", grpc.StatusCode.NOT_FOUND, "NoSuchKey"),
        err("node-6", grpc.StatusCode.UNAVAILABLE)]
    with pytest.raises(oe.InsufficientWriteQuorum) as exc:
        reduce_errors(results, 4, write=True, what="put b/k")
    message = str(exc.value)
    assert message.startswith("put b/k: 2 of 6 succeeded (quorum 4); ")
    assert "node-3: DEADLINE_EXCEEDED" in message and "node-5: NOT_FOUND NoSuchKey" in message
    assert exc.value.retryable
    with pytest.raises(oe.InsufficientReadQuorum):
        reduce_errors(results, 4, write=False)


def test_reduce_errors_prefers_an_answer_a_quorum_gave():
    results = [err(n, grpc.StatusCode.NOT_FOUND, "NoSuchBucket") for n in NODES[:4]] + [
        err(n, grpc.StatusCode.UNAVAILABLE) for n in NODES[4:]]
    with pytest.raises(oe.BucketNotFound):
        reduce_errors(results, 4, write=False)
    results = [err(n, grpc.StatusCode.RESOURCE_EXHAUSTED, "DiskFull") for n in NODES[:3]] + [
        NodeResult(n) for n in NODES[3:]]
    with pytest.raises(oe.StorageFull):
        reduce_errors(results, 4, write=True)
