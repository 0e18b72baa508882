"""Which version of a key is the current one: the highest version id that a read quorum of the
set's nodes hold (each node reports its newest few versions), decided as soon as the nodes
still silent could no longer change the answer."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import grpc

from gateway.objects import errors as oe
from gateway.objects.context import META_VERSIONS, LayerContext
from gateway.objects.metadata import ObjectMeta
from gateway.objects.quorum import NodeResult, fan_out, reduce_errors
from gateway.placement import ErasureSet
from gateway.storage_client import NodeCallError
from proto import storage_pb2 as pb

__all__ = [
    "UNDECIDED",
    "ChosenVersion",
    "Undecided",
    "choose_version",
    "read_version",
    "resolve_version",
]


class Undecided:
    """Nodes that have not answered yet could still change the choice."""


UNDECIDED = Undecided()


def _quorum_of(record: pb.ObjectVersion, default: int) -> int:
    return record.geometry.data_shards or default


def choose_version(
    answers: Mapping[str, Sequence[pb.ObjectVersion]], *, read_quorum: int, pending: int = 0
) -> str | Undecided | None:
    """The highest version id held by at least its read quorum (k) of the answering nodes.

    `answers` maps each node that answered to the versions it holds (empty when none);
    `pending` nodes have not answered. None means no version can reach quorum.
    """
    counts: Counter[str] = Counter()
    quorum: dict[str, int] = {}
    for versions in answers.values():
        for record in {v.version_id: v for v in versions}.values():
            counts[record.version_id] += 1
            quorum[record.version_id] = _quorum_of(record, read_quorum)
    best = max((v for v, c in counts.items() if c >= quorum[v]), default=None)
    # a higher version might still reach quorum with the nodes not heard from yet
    for version_id, count in counts.items():
        if (best is None or version_id > best) and count + pending >= quorum[version_id]:
            return UNDECIDED
    if best is None and pending >= read_quorum:
        return UNDECIDED
    return best


@dataclass(frozen=True)
class ChosenVersion:
    """The version a quorum agreed on, which nodes hold it (and their shard indexes), and
    which answering nodes lack it (to heal)."""

    version_id: str
    meta: ObjectMeta
    holders: Mapping[str, pb.ObjectVersion]  # node -> that node's record of the version
    stale: tuple[str, ...]

    @property
    def delete_marker(self) -> bool:
        return self.meta.delete_marker or any(r.delete_marker for r in self.holders.values())

    def shard_holders(self) -> dict[int, str]:
        """Shard index -> node, as the nodes themselves report it."""
        return {r.shard_index: node for node, r in self.holders.items()}


def resolve_version(
    answers: Mapping[str, Sequence[pb.ObjectVersion]], version_id: str
) -> ChosenVersion:
    """The ChosenVersion for `version_id` (metadata: the blob most holders agree on)."""
    holders = {node: v for node, versions in answers.items() for v in versions
               if v.version_id == version_id}
    blob = Counter(r.meta for r in holders.values()).most_common(1)[0][0]
    stale = tuple(node for node in answers if node not in holders)
    return ChosenVersion(version_id, ObjectMeta.from_bytes(blob), holders, stale)


_ABSENT = {"NoSuchKey", "NoSuchVersion"}
HOLDER_GRACE = 0.05  # seconds a decided read still waits for data-shard holders
# A hedged read asks the k data-shard holders first and the rest of the set only when those
# do not settle the choice: after this many seconds, or at once when all of them answered.
HEDGE_AFTER = 0.1


def _answers(results: dict[str, NodeResult[pb.ReadMetaReply]]) -> dict[str, list[pb.ObjectVersion]]:
    """Versions per node that answered; a node without the key answered "none"."""
    out: dict[str, list[pb.ObjectVersion]] = {}
    for node, r in results.items():
        if r.ok and r.value is not None:
            out[node] = list(r.value.versions)
        elif r.error is not None and r.error.code == grpc.StatusCode.NOT_FOUND \
                and r.error.reason in _ABSENT:
            out[node] = []
    return out


async def read_version(ctx: LayerContext, bucket: str, key: str, eset: ErasureSet, *,
                       version_id: str = "", include_inline: bool = True,
                       hedged: bool = False, head_bytes: int = 0) -> ChosenVersion:
    """The current version of `bucket/key` (or the named one) as a read quorum agrees.

    `head_bytes`: each node also returns that much of its shard's start (head_blocks).
    `hedged`: ask the k nodes that hold the data shards first, and the others only when
    their answers do not settle it (see HEDGE_AFTER): a healthy read then costs k calls
    instead of k+m. Unasked nodes count as undecided, so the choice is the same: any
    version a write quorum committed has at least k - m holders among any k nodes, and one
    seen that often (with m nodes unasked) makes the read ask the rest before choosing.

    Raises ObjectNotFound / VersionNotFound when enough nodes answered and no version has
    quorum, BucketNotFound when a quorum says so, InsufficientReadQuorum when too few answered.
    """
    request = pb.ReadMetaRequest(bucket=bucket, key=key, version_id=version_id,
                                 max_versions=META_VERSIONS, include_inline=include_inline,
                                 head_bytes=head_bytes)
    timeout = ctx.timeouts.unary
    nodes = ctx.pool.usable(eset.nodes, eset.read_quorum)
    first = set(nodes[:eset.read_quorum] if hedged else nodes)  # data shards: nodes[:k]
    ask_rest = asyncio.Event()
    started = time.monotonic()

    def decided(results: dict[str, NodeResult[pb.ReadMetaReply]]) -> bool:
        answers = _answers(results)
        # every node without a definite answer (pending, failed, or not asked because it is
        # sidelined) might hold a version: only what they cannot change is decided
        choice = choose_version(answers, read_quorum=eset.read_quorum,
                                pending=len(eset.nodes) - len(answers))
        if isinstance(choice, str):
            # stop once a quorum agrees; wait a moment for missing data-shard holders, so a
            # healthy read stays a join rather than a decode
            held = {v.shard_index for vs in answers.values() for v in vs
                    if v.version_id == choice}
            k = next(v.geometry.data_shards for vs in answers.values() for v in vs
                     if v.version_id == choice) or eset.read_quorum
            if held.issuperset(range(k)) or time.monotonic() - started > HOLDER_GRACE:
                return True
        # "absent" needs as many answers as "present" does; errors wait for everyone
        elif choice is None and len(answers) >= eset.read_quorum:
            return True
        if first.issubset(results):
            ask_rest.set()
        return False

    stopped = False

    def done(results: dict[str, NodeResult[pb.ReadMetaReply]]) -> bool:
        nonlocal stopped
        stopped = decided(results)
        return stopped

    async def read_meta(node: str) -> pb.ReadMetaReply:
        if node not in first:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(HEDGE_AFTER):
                    await ask_rest.wait()
            if stopped:  # decided without this node: it is not asked at all
                raise NodeCallError(node, grpc.StatusCode.CANCELLED, "", "not needed")
        return await ctx.pool.client(node).unary("ReadMeta", request, deadline=timeout)

    out = await fan_out(nodes, read_meta, quorum=eset.read_quorum, timeout=timeout + 1,
                        done=done, detach=True)
    results = {r.node: r for r in out.results}
    answers = _answers(results)
    silent = len(eset.nodes) - len(answers)
    chosen = choose_version(answers, read_quorum=eset.read_quorum, pending=silent)
    sidelined = [n for n in eset.nodes if n not in nodes]
    if chosen is UNDECIDED and sidelined:
        # Only nodes the pool is backing off from could decide it (e.g. just back from an
        # outage): asking them costs at most one deadline, failing the read costs a retry.
        more = await fan_out(sidelined, lambda n: ctx.pool.client(n).unary(
            "ReadMeta", request, deadline=timeout), quorum=1, timeout=timeout + 1)
        results.update({r.node: r for r in more.results})
        answers = _answers(results)
        silent = len(eset.nodes) - len(answers)
        chosen = choose_version(answers, read_quorum=eset.read_quorum, pending=silent)
        out = type(out)(tuple(results.values()), out.quorum)
    if isinstance(chosen, str):
        return resolve_version(answers, chosen)
    what = f"read {bucket}/{key}"
    if len(answers) < eset.read_quorum:
        reduce_errors(out.results, eset.read_quorum, write=False, what=what)
        raise oe.InsufficientReadQuorum(f"{what}: {len(answers)} of {len(nodes)} answered")
    if chosen is UNDECIDED:
        # A version the answering nodes hold too few shards of may be complete on the silent
        # ones: "absent" would tell the client an acknowledged object was deleted. Retryable.
        raise oe.InsufficientReadQuorum(
            f"{what}: {len(answers)} of {len(eset.nodes)} nodes answered and no version has "
            f"{eset.read_quorum} holders among them; {silent} silent node(s) may hold it")
    if version_id:
        raise oe.VersionNotFound(f"{bucket}/{key} has no version {version_id}")
    raise oe.ObjectNotFound(f"{bucket}/{key} does not exist")
