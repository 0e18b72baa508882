"""Which version of a key is the current one: the highest version id that a read quorum of the
set's nodes hold (each node reports its newest few versions), decided as soon as the nodes
still silent could no longer change the answer."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from gateway.objects.metadata import ObjectMeta
from proto import storage_pb2 as pb

__all__ = ["UNDECIDED", "ChosenVersion", "Undecided", "choose_version", "resolve_version"]


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
