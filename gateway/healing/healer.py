"""`Healer.heal_object`: bring every node of a key's set to the version a read quorum holds.

1. Ask every node of the set what it holds (InspectKey); a node that does not answer is
   "silent", never "empty".
2. Decide with the read rule (highest version id held by k nodes, delete markers too). Versions
   above it held by fewer than k nodes are dangling when every node answered and they are
   older than the grace period: they are rolled back where they are held (logged), so the
   previous version is the latest there again.
3. For each node of the version's distribution that lacks it, holds it under a wrong index or
   with missing/short shard files (or, in deep mode, blocks failing their hash; or an inline
   shard failing its hash), rebuild only its shards and commit them with the version's own id
   and metadata. A holder whose metadata blob differs from the agreed one gets it (UpdateMeta).

Never deletes on a silent node's account; never writes anything newer than what is there
(the node keeps the highest version id as its latest, so a concurrent PUT always wins).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection
from dataclasses import dataclass, replace

import grpc

from gateway.erasure import ErasureError, block_hash
from gateway.healing.buckets import BucketHeal, heal_buckets
from gateway.healing.decisions import (
    ALL_PARTS,
    NodeView,
    agreed_meta,
    judge_versions,
    shard_repairs,
    version_age_ns,
)
from gateway.healing.rebuild import RebuildTarget, RebuildVersion
from gateway.healing.survey import inline_shards, survey_key, verify_shards
from gateway.objects import errors as oe
from gateway.objects.context import LayerContext
from gateway.objects.metadata import MetadataError, ObjectMeta
from gateway.objects.quorum import fan_out
from gateway.placement import ErasureSet
from proto import storage_pb2 as pb

__all__ = ["HealCounters", "HealResult", "Healer"]

log = logging.getLogger("tessera.heal")
DANGLING_GRACE = 300.0  # seconds: a younger version may be a commit still in flight
DANGLING_RECHECK = 1.0  # seconds between the two surveys that must agree before a rollback


@dataclass(frozen=True)
class HealResult:
    """What one heal_object did. `complete`: nothing is left to do for this key now."""

    bucket: str
    key: str
    version_id: str | None = None  # the version healed towards (None: none has quorum)
    repaired: tuple[str, ...] = ()  # nodes given a new copy of the version
    meta_fixed: tuple[str, ...] = ()  # holders whose metadata blob was replaced
    shards_rebuilt: int = 0
    bytes_rebuilt: int = 0
    rolled_back: tuple[tuple[str, tuple[str, ...]], ...] = ()  # (version id, its holders)
    offline: tuple[str, ...] = ()  # nodes that did not answer: healed later
    waiting: tuple[str, ...] = ()  # newer versions not settled yet
    failed: tuple[str, ...] = ()  # per-node failures
    error: str = ""

    @property
    def outcome(self) -> str:
        if self.error or self.failed:
            return "failed"
        if self.offline or self.waiting:
            return "deferred"
        if self.repaired or self.meta_fixed or self.rolled_back:
            return "healed"
        return "healthy"

    @property
    def complete(self) -> bool:
        return self.outcome in ("healed", "healthy")


@dataclass
class HealCounters:
    """Running totals since the healer started (the service turns them into statistics)."""

    checked: int = 0
    healed: int = 0
    failed: int = 0
    deferred: int = 0
    shards_rebuilt: int = 0
    bytes_rebuilt: int = 0
    dangling_rolled_back: int = 0
    meta_fixed: int = 0
    buckets_healed: int = 0
    last_error: str = ""
    last_error_at: float | None = None

    def add(self, r: HealResult) -> None:
        self.checked += 1
        self.shards_rebuilt += r.shards_rebuilt
        self.bytes_rebuilt += r.bytes_rebuilt
        self.dangling_rolled_back += len(r.rolled_back)
        self.meta_fixed += len(r.meta_fixed)
        outcome = r.outcome
        if outcome == "healed":
            self.healed += 1
        elif outcome == "failed":
            self.failed += 1
            self.last_error = r.error or "; ".join(r.failed)
            self.last_error_at = time.time()
        elif outcome == "deferred":
            self.deferred += 1


class Healer:
    """Heals objects and buckets through one object layer's context (nodes, placement)."""

    def __init__(self, ctx: LayerContext, *, dangling_grace: float = DANGLING_GRACE,
                 commit_window: float | None = None):
        self.ctx = ctx
        self.dangling_grace = dangling_grace
        # a commit's fan-out plus its rollback each take at most a unary deadline (+1 s)
        self.commit_window = commit_window if commit_window is not None else \
            2 * (ctx.timeouts.unary + 1.0)
        self.counters = HealCounters()
        self._bucket_locks: dict[str, asyncio.Lock] = {}
        self._buckets_checked: dict[str, float] = {}

    # ---- buckets ----

    async def heal_buckets(self, only: str | None = None) -> list[BucketHeal]:
        results = await heal_buckets(self.ctx, only)
        self.counters.buckets_healed += sum(len(r.made_on) for r in results)
        return results

    async def _bucket_exists(self, bucket: str) -> bool | None:
        """Heals the bucket where it is missing (once per few seconds per bucket)."""
        lock = self._bucket_locks.setdefault(bucket, asyncio.Lock())
        async with lock:
            if time.monotonic() - self._buckets_checked.get(bucket, -1e9) < 5.0:
                return True
            (result,) = await self.heal_buckets(bucket)
            if result.exists:
                self._buckets_checked[bucket] = time.monotonic()
            return result.exists

    # ---- objects ----

    async def heal_object(self, bucket: str, key: str, *,
                          deep: bool | Collection[str] = False) -> HealResult:
        """Heals one key (see the module docstring). `deep`: VerifyShard on every holder
        (True) or on the named nodes. Never raises for a node or data problem: the result
        says what happened."""
        eset = self.ctx.placement.locate(bucket, key)
        try:
            result = await self._heal(bucket, key, eset, deep)
        except (oe.ObjectLayerError, MetadataError, ErasureError) as exc:
            result = HealResult(bucket, key, error=f"{type(exc).__name__}: {exc}")
        if result.outcome == "failed":
            log.warning("heal %s/%s failed: %s", bucket, key,
                        result.error or "; ".join(result.failed))
        self.counters.add(result)
        return result

    async def _survey(self, bucket: str, key: str, eset: ErasureSet) -> list[NodeView] | None:
        views = await survey_key(self.ctx, bucket, key, eset.nodes)
        if any(not v.has_bucket for v in views):
            exists = await self._bucket_exists(bucket)
            if exists is False:
                return None  # the bucket is gone: nothing to heal
        return views

    async def _heal(self, bucket: str, key: str, eset: ErasureSet,
                    deep: bool | Collection[str]) -> HealResult:
        views = await self._survey(bucket, key, eset)
        if views is None:
            return HealResult(bucket, key)
        verdict = self._judge(views, eset)
        if verdict.dangling:
            # Deleting is the one step that cannot be undone: it needs the same answer from a
            # second survey, so a node's passing slip (a restart, a stale read) deletes nothing.
            await asyncio.sleep(DANGLING_RECHECK)
            views = await self._survey(bucket, key, eset)
            if views is None:
                return HealResult(bucket, key)
            first = set(verdict.dangling)
            verdict = self._judge(views, eset)
            unconfirmed = tuple(v for v, holders in verdict.dangling if (v, holders) not in first)
            verdict = replace(verdict, dangling=tuple(d for d in verdict.dangling if d in first),
                              waiting=(*verdict.waiting, *unconfirmed))
        rolled = []
        for version_id, holders in verdict.dangling:
            await self._roll_back(bucket, key, version_id, holders, eset)
            rolled.append((version_id, holders))
        if rolled:
            views = await self._survey(bucket, key, eset) or []
            verdict = self._judge(views, eset)
        offline = tuple(v.node for v in views if not v.answered)
        if verdict.target is None:
            return HealResult(bucket, key, rolled_back=tuple(rolled), offline=offline,
                              waiting=verdict.waiting)
        if self._in_flight(views, verdict.target):
            return HealResult(bucket, key, verdict.target, rolled_back=tuple(rolled),
                              offline=offline, waiting=(*verdict.waiting, verdict.target))
        result = await self._repair(bucket, key, views, verdict.target, deep)
        return HealResult(bucket, key, verdict.target, result.repaired, result.meta_fixed,
                          result.shards_rebuilt, result.bytes_rebuilt, tuple(rolled),
                          tuple(sorted(set(offline) | set(result.offline))), verdict.waiting,
                          result.failed, result.error)

    def _in_flight(self, views: list[NodeView], version_id: str) -> bool:
        """A version younger than a commit plus its rollback may still be rolled back by the
        PUT that made it (a commit that looked short of quorum): do not copy it yet."""
        held = [r for v in views if (r := v.holds(version_id)) is not None]
        return version_age_ns(version_id, held, time.time_ns()) < self.commit_window * 1e9

    def _judge(self, views: list[NodeView], eset: ErasureSet):
        return judge_versions(views, read_quorum=eset.read_quorum, now_ns=time.time_ns(),
                              grace_ns=int(self.dangling_grace * 1e9))

    async def _roll_back(self, bucket: str, key: str, version_id: str, holders: tuple[str, ...],
                         eset: ErasureSet) -> None:
        log.warning("heal: rolling back dangling version %s of %s/%s: held by %d node(s) (%s), "
                    "fewer than the %d needed to read it, and every node of the set answered",
                    version_id, bucket, key, len(holders), ", ".join(holders), eset.read_quorum)
        request = pb.DeleteVersionRequest(bucket=bucket, key=key, version_id=version_id)
        timeout = self.ctx.timeouts.unary
        out = await fan_out(list(holders), lambda n: self.ctx.pool.client(n).unary(
            "DeleteVersion", request, deadline=timeout), quorum=0, timeout=timeout + 1)
        failed = [r.error.short() for r in out.failures if r.error is not None and not (
            r.error.code == grpc.StatusCode.NOT_FOUND and r.error.reason == "NoSuchVersion")]
        if failed:
            raise oe.InsufficientWriteQuorum(f"roll back {bucket}/{key} {version_id}: "
                                             + ", ".join(failed))

    async def _repair(self, bucket: str, key: str, views: list[NodeView], version_id: str,
                      deep: bool | Collection[str]) -> HealResult:
        plan = await _RepairPlan.make(self.ctx, bucket, key, views, version_id, deep)
        return await plan.run()


@dataclass
class _RepairPlan:
    """The repair of one version: who holds it, who needs what, and the rebuild."""

    ctx: LayerContext
    bucket: str
    key: str
    version_id: str
    meta: ObjectMeta
    blob: bytes
    holders: dict[str, pb.VersionRecord]
    targets: list[RebuildTarget]
    stale_meta: list[str]
    offline: list[str]
    intact_inline: dict[int, bytes]

    @classmethod
    async def make(cls, ctx: LayerContext, bucket: str, key: str, views: list[NodeView],
                   version_id: str, deep: bool | Collection[str]) -> _RepairPlan:
        holders = {v.node: r for v in views if v.answered and (r := v.holds(version_id))}
        blob = agreed_meta(holders.values())
        meta = ObjectMeta.from_bytes(blob)
        answered = {v.node for v in views if v.answered}
        offline = [n for n in meta.erasure.distribution if n not in answered]
        verify: dict[str, pb.VerifyShardReply | None] = {}
        wanted = set(holders) if deep is True else set(holders) & set(deep or ())
        if wanted and not meta.delete_marker and not meta.is_inline:
            verify = await verify_shards(ctx, bucket, key, version_id, sorted(wanted))
            offline += [n for n, reply in verify.items() if reply is None]
        targets, stale = cls._targets(meta, blob, holders, answered, verify, {})
        intact: dict[int, bytes] = {}
        if meta.is_inline and holders and (targets or wanted):
            # inline shards are fetched when some must be rebuilt from them, or in deep mode
            inline_ok, intact = await cls._check_inline(ctx, bucket, key, version_id, meta,
                                                        holders)
            targets, stale = cls._targets(meta, blob, holders, answered, verify, inline_ok)
        intact = {i: s for i, s in intact.items() if all(t.index != i for t in targets)}
        return cls(ctx, bucket, key, version_id, meta, blob, holders, targets, stale,
                   offline, intact)

    @staticmethod
    def _targets(meta: ObjectMeta, blob: bytes, holders: dict[str, pb.VersionRecord],
                 answered: set[str], verify: dict[str, pb.VerifyShardReply | None],
                 inline_ok: dict[str, bool]) -> tuple[list[RebuildTarget], list[str]]:
        """The nodes to rebuild (and what), and the holders whose metadata blob is stale."""
        targets, stale = [], []
        for index, node in enumerate(meta.erasure.distribution):
            if node not in answered or (node in verify and verify[node] is None):
                continue
            record = holders.get(node)
            parts = shard_repairs(meta, index, record, verify.get(node), inline_ok.get(node))
            if parts:
                kept = {} if parts == ALL_PARTS or record is None else {
                    f.part_number: pb.PartRef(part_number=f.part_number, data_id=f.data_id,
                                              shard_size=f.shard_size)
                    for f in record.shards if f.part_number not in parts}
                targets.append(RebuildTarget(node, index, parts, kept))
            elif record is not None and record.version.meta != blob:
                stale.append(node)
        return targets, stale

    @staticmethod
    async def _check_inline(ctx: LayerContext, bucket: str, key: str, version_id: str,
                            meta: ObjectMeta, holders: dict[str, pb.VersionRecord]
                            ) -> tuple[dict[str, bool], dict[int, bytes]]:
        """Each holder's inline shard checked against the metadata's hash."""
        shards = await inline_shards(ctx, bucket, key, version_id, list(holders))
        ok: dict[str, bool] = {}
        intact: dict[int, bytes] = {}
        algorithm = meta.erasure.hash_algorithm
        for node, shard in shards.items():
            index = holders[node].version.shard_index
            good = shard is not None and index < len(meta.inline_hashes) and \
                block_hash(algorithm, shard) == meta.inline_hashes[index]
            ok[node] = good
            if good and shard is not None:
                intact[index] = shard
        return ok, intact

    def _geometry(self) -> pb.Geometry | None:
        return next((r.version.geometry for r in self.holders.values()
                     if r.version.meta == self.blob and r.version.HasField("geometry")), None)

    async def run(self) -> HealResult:
        rebuild = RebuildVersion(self.ctx, self.bucket, self.key, self.version_id, self.meta,
                                 self.blob, self._geometry())
        committed: list[RebuildTarget] = []
        error = ""
        try:
            if self.targets:
                await self._rebuild(rebuild)
                committed = await rebuild.commit(self.targets)
        except (oe.ObjectLayerError, ErasureError) as exc:
            await rebuild.abort_all(self.targets)
            error = f"{type(exc).__name__}: {exc}"
        if rebuild.corrupt_sources:
            self.ctx.record_heal(self.bucket, self.key, self.version_id, "read-corrupt",
                                 sorted(rebuild.corrupt_sources))
        fixed = await self._fix_meta()
        failed = tuple(t.error for t in self.targets if t.error and not error)
        shards = sum(len(t.written) + (t.inline is not None) for t in committed)
        size = sum(sum(t.written.values()) + len(t.inline or b"") for t in committed)
        if committed:
            log.info("heal %s/%s %s: repaired %s (%d shards, %d bytes)", self.bucket,
                     self.key, self.version_id, ", ".join(t.node for t in committed), shards,
                     size)
        return HealResult(self.bucket, self.key, self.version_id,
                          tuple(t.node for t in committed), fixed, shards, size,
                          offline=tuple(self.offline), failed=failed, error=error)

    async def _rebuild(self, rebuild: RebuildVersion) -> None:
        if self.meta.delete_marker:
            return
        if self.meta.is_inline:
            await rebuild.rebuild_inline(self.intact_inline, self.targets)
            return
        for part in self.meta.parts:
            wanting = [t for t in self.targets if t.wants(part.number)]
            if not wanting:
                continue
            busy = {t.node for t in wanting}
            sources = {n: r.version for n, r in self.holders.items() if n not in busy}
            await rebuild.rebuild_part(part, sources, wanting)

    async def _fix_meta(self) -> tuple[str, ...]:
        if not self.stale_meta:
            return ()
        request = pb.UpdateMetaRequest(bucket=self.bucket, key=self.key,
                                       version_id=self.version_id, meta=self.blob)
        timeout = self.ctx.timeouts.unary
        out = await fan_out(self.stale_meta, lambda n: self.ctx.pool.client(n).unary(
            "UpdateMeta", request, deadline=timeout), quorum=0, timeout=timeout + 1)
        return tuple(r.node for r in out.successes)
