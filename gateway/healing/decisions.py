"""What healing decides from the set's answers, as pure functions: which version is current
(the read rule), which versions are dangling, and which shards of a node need rebuilding.

Nothing here talks to a node; `healer.py` gathers the answers and acts on the verdicts.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from common import bitrot
from gateway.erasure import HASH_SHA256, HASH_XXH3_128
from gateway.objects.metadata import ObjectMeta
from proto import storage_pb2 as pb

__all__ = [
    "ALL_PARTS",
    "NodeView",
    "VersionVerdict",
    "agreed_meta",
    "judge_versions",
    "shard_file_size",
    "shard_repairs",
    "version_age_ns",
]

ALL_PARTS = frozenset({0})  # "rebuild every part" (part numbers start at 1)
_HASH_ENUM = {HASH_XXH3_128: bitrot.XXH3_128, HASH_SHA256: bitrot.SHA256}


@dataclass(frozen=True)
class NodeView:
    """One node's InspectKey answer for a key. `answered` is False when the node did not
    answer (down, paused, timed out): such a node may hold anything."""

    node: str
    versions: tuple[pb.VersionRecord, ...] = ()
    answered: bool = True
    has_bucket: bool = True
    error: str = ""

    def holds(self, version_id: str) -> pb.VersionRecord | None:
        return next((r for r in self.versions if r.version.version_id == version_id), None)


@dataclass(frozen=True)
class VersionVerdict:
    """`target`: the version a read quorum holds (None: none has one). `dangling`: versions
    above it that can never be read and may be rolled back now, with their holders.
    `waiting`: versions above it that are not settled (a node did not answer, or the version
    is young enough to be a commit still in flight): left alone for now."""

    target: str | None
    dangling: tuple[tuple[str, tuple[str, ...]], ...] = ()
    waiting: tuple[str, ...] = ()


def version_age_ns(version_id: str, holders: Iterable[pb.VersionRecord], now_ns: int) -> int:
    """How long ago the version was made: the younger of its UUIDv7 time and its first commit
    on a holder (so a clock behind on either side errs towards "young"; copies made later by
    healing do not make it look young)."""
    commits = [r.version.mod_time_ns for r in holders]
    ages = [now_ns - min(commits)] if commits else []
    try:
        parsed = uuid.UUID(version_id)
        if parsed.version == 7:
            ages.append(now_ns - (parsed.int >> 80) * 1_000_000)
    except ValueError:
        pass
    return min(ages) if ages else 0


def judge_versions(views: Sequence[NodeView], *, read_quorum: int, now_ns: int,
                   grace_ns: int) -> VersionVerdict:
    """The read rule (highest version id held by at least its k nodes, delete markers
    included) and the dangling rule: a version above it held by fewer than k nodes, with every
    node of the set answering definitively and the version older than `grace_ns`."""
    answered = [v for v in views if v.answered]
    silent = len(views) - len(answered)
    holders: dict[str, list[tuple[str, pb.VersionRecord]]] = {}
    for view in answered:
        for record in {r.version.version_id: r for r in view.versions}.values():
            holders.setdefault(record.version.version_id, []).append((view.node, record))

    def quorum(version_id: str) -> int:
        return holders[version_id][0][1].version.geometry.data_shards or read_quorum

    target = max((v for v, h in holders.items() if len(h) >= quorum(v)), default=None)
    dangling, waiting = [], []
    for version_id in sorted(holders, reverse=True):
        if target is not None and version_id <= target:
            break
        held = holders[version_id]
        age = version_age_ns(version_id, [r for _, r in held], now_ns)
        if silent or age < grace_ns:
            waiting.append(version_id)
        else:
            dangling.append((version_id, tuple(node for node, _ in held)))
    return VersionVerdict(target, tuple(dangling), tuple(waiting))


def agreed_meta(records: Iterable[pb.VersionRecord]) -> bytes:
    """The metadata blob most holders of a version store (they are normally identical)."""
    return Counter(r.version.meta for r in records).most_common(1)[0][0]


def shard_file_size(shard_size: int, shard_block_size: int, hash_algorithm: str) -> int:
    """Bytes on disk of a shard of `shard_size` bytes: every block behind its hash."""
    blocks = -(-shard_size // shard_block_size)
    return shard_size + blocks * bitrot.hash_len(_HASH_ENUM[hash_algorithm])


def _bad_parts(verify: pb.VerifyShardReply | None) -> set[int]:
    if verify is None:
        return set()
    return set(verify.missing_parts) | {b.part_number for b in verify.bad_blocks}


def shard_repairs(meta: ObjectMeta, index: int, record: pb.VersionRecord | None,
                  verify: pb.VerifyShardReply | None = None,
                  inline_ok: bool | None = None) -> frozenset[int]:
    """Part numbers of a node's shard that must be rebuilt (ALL_PARTS: the whole version;
    empty: nothing). `record` is the node's InspectKey record of the version (None: it lacks
    it); `verify` its VerifyShard answer in deep mode; `inline_ok` whether its inline shard
    matched the hash in the metadata (None: not checked)."""
    if record is None or record.version.shard_index != index:
        return ALL_PARTS
    if meta.delete_marker:
        return frozenset() if record.version.delete_marker else ALL_PARTS
    if meta.is_inline:
        ok = record.version.is_inline and inline_ok is not False and not _bad_parts(verify)
        return frozenset() if ok else ALL_PARTS
    if record.version.is_inline or record.version.delete_marker:
        return ALL_PARTS
    geometry = meta.erasure.geometry
    files: Mapping[int, pb.ShardFile] = {s.part_number: s for s in record.shards}
    if set(files) != {p.number for p in meta.parts}:
        return ALL_PARTS
    bad = _bad_parts(verify)
    for part in meta.parts:
        f = files[part.number]
        size = geometry.shard_size(part.stored_size)
        if not f.present or f.shard_size != size or f.file_size != shard_file_size(
                size, geometry.shard_block_size, geometry.hash_algorithm):
            bad.add(part.number)
    return frozenset(bad)
