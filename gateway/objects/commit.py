"""Making a version visible: CommitObject on the set's nodes with write quorum, or roll back.

A commit that reaches the write quorum succeeds, and the set's nodes that missed it go on the
heal queue. One that does not is undone everywhere it might have landed (DeleteVersion on the
nodes that committed or did not answer, AbortWrite elsewhere), so no reader ever sees half an
object, and the caller gets the dominant error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from gateway.objects.context import LayerContext, geometry_message
from gateway.objects.metadata import ObjectMeta
from gateway.objects.quorum import NodeResult, fan_out, reduce_errors
from gateway.placement import ErasureSet
from proto import storage_pb2 as pb

__all__ = ["CommitPlan", "commit_version", "rollback_version", "settle_commit"]


@dataclass(frozen=True)
class CommitPlan:
    """One version to commit: its metadata, and which node commits which shard index."""

    bucket: str
    key: str
    version_id: str
    meta: ObjectMeta
    eset: ErasureSet
    shards: dict[int, str]  # shard index -> node
    parts: tuple[pb.PartRef, ...] = ()
    inline: Sequence[bytes] | None = None  # shard i's bytes for an inline object
    upload_id: str = ""
    data_ids: tuple[str, ...] = ()  # temporary data to abort on a rollback
    earlier_failures: list[NodeResult[object]] = field(default_factory=list)

    def request(self, index: int, blob: bytes) -> pb.CommitObjectRequest:
        return pb.CommitObjectRequest(
            bucket=self.bucket, key=self.key, version_id=self.version_id,
            delete_marker=self.meta.delete_marker, meta=blob, shard_index=index,
            geometry=geometry_message(self.meta.erasure.geometry), parts=self.parts,
            inline_shard=self.inline[index] if self.inline is not None else b"",
            upload_id=self.upload_id)


async def commit_version(ctx: LayerContext, plan: CommitPlan) -> tuple[str, ...]:
    """Commits on every node of the plan; returns the nodes that committed, or rolls back and
    raises (InsufficientWriteQuorum, StorageFull, or an answer a quorum gave)."""
    blob = plan.meta.to_bytes()
    by_node = {node: index for index, node in plan.shards.items()}
    timeout = ctx.timeouts.unary
    out = await fan_out(
        list(by_node),
        lambda n: ctx.pool.client(n).unary("CommitObject", plan.request(by_node[n], blob),
                                           deadline=timeout),
        quorum=plan.eset.write_quorum, timeout=timeout + 1)
    return await settle_commit(ctx, plan, out.results)


async def settle_commit(ctx: LayerContext, plan: CommitPlan,
                        results: Sequence[NodeResult[object]]) -> tuple[str, ...]:
    """Each node's outcome of committing `plan` (by CommitObject, or at the end of its write
    stream): the nodes that committed when they are a write quorum (the rest of the set goes
    on the heal queue); otherwise the version is rolled back and the dominant error raised."""
    committed = tuple(r.node for r in results if r.ok)
    if len(committed) >= plan.eset.write_quorum:
        missed = [n for n in plan.eset.nodes if n not in committed]
        ctx.record_heal(plan.bucket, plan.key, plan.version_id, "commit-missed", missed)
        return committed
    unknown = [r.node for r in results if r.error is not None and r.error.is_transport]
    await rollback_version(ctx, plan, [*committed, *unknown])
    reduce_errors([*plan.earlier_failures, *results], plan.eset.write_quorum, write=True,
                  what=f"commit {plan.bucket}/{plan.key}")
    raise AssertionError("unreachable: quorum was not reached")


async def rollback_version(ctx: LayerContext, plan: CommitPlan, nodes: Sequence[str]) -> None:
    """Best effort: remove the version where it may have committed, drop temporary data
    elsewhere. What stays behind (a node that is down) never reaches read quorum."""
    timeout = ctx.timeouts.unary
    delete = pb.DeleteVersionRequest(bucket=plan.bucket, key=plan.key,
                                     version_id=plan.version_id)
    await fan_out(list(nodes), lambda n: ctx.pool.client(n).unary("DeleteVersion", delete,
                                                                    deadline=timeout),
                  quorum=0, timeout=timeout + 1)
    others = [n for n in plan.eset.nodes if n not in nodes]
    for data_id in plan.data_ids:
        abort = pb.AbortWriteRequest(data_id=data_id)
        await fan_out(others, lambda n, r=abort: ctx.pool.client(n).unary(  # type: ignore[misc]
            "AbortWrite", r, deadline=timeout), quorum=0, timeout=timeout + 1)
