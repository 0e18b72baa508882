"""The erasure-coded object layer over the storage nodes (implements `ObjectLayer`), and the
factory the gateway's entry point uses to build it.

Each operation lives in its own module (put, get, listing, multipart, buckets); this class
wires them to one shared `LayerContext`. Encryption plugs in at two seams: `put_stream`'s
sealer (plaintext blocks -> stored blocks, plus an opaque record kept in the metadata) and the
reader's `stream_stored` (the stored bytes of any range). Until gateway/crypto is wired in,
requests that need encryption get KMSNotConfigured.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from common.endpoint_health import EndpointState
from common.topology import Topology
from gateway.erasure import tune_malloc
from gateway.heal_queue import HealQueue, HealQueueStatistics, MemoryHealQueue
from gateway.node_pool import NodePool
from gateway.objects import buckets, listing, multipart, put
from gateway.objects import errors as oe
from gateway.objects.api import (
    BodyStream,
    BucketInfo,
    CompletedPart,
    ListPage,
    ObjectInfo,
    PartInfo,
    PutMetadata,
    SSECustomerKey,
    SSEParams,
    UploadInfo,
)
from gateway.objects.context import LayerContext
from gateway.objects.get import ErasureObjectReader
from gateway.objects.health import ClusterHealth, probe_cluster
from gateway.objects.metadata import ObjectMeta
from gateway.objects.quorum import fan_out
from gateway.objects.versions import read_version
from gateway.placement import Placement
from gateway.storage_client import NodeTLS, Timeouts
from proto import storage_pb2 as pb

if TYPE_CHECKING:
    from gateway.healing.service import HealService

__all__ = ["ErasureObjectLayer", "LayerStatistics", "build_erasure_layer"]


@dataclass(frozen=True)
class LayerStatistics:
    """For /metrics and the admin summary: each node's health memory, the heal backlog."""

    nodes: tuple[EndpointState, ...]
    heal_queue: HealQueueStatistics


def _no_encryption(what: str) -> oe.KMSNotConfigured:
    return oe.KMSNotConfigured(f"{what}: server-side encryption is not available on this gateway")


class ErasureObjectLayer:
    """Buckets, objects and multipart uploads on erasure-coded storage nodes."""

    def __init__(self, ctx: LayerContext):
        self.ctx = ctx
        # the gateway's healing (gateway/healing/service.py), set by gateway/app.py
        self.healer: HealService | None = None

    @property
    def heal_queue(self) -> HealQueue:
        return self.ctx.heal

    # ---- buckets ----

    async def make_bucket(self, bucket: str) -> None:
        await buckets.make_bucket(self.ctx, bucket)

    async def delete_bucket(self, bucket: str) -> None:
        page = await listing.list_objects(self.ctx, bucket, limit=1)
        await buckets.delete_bucket(self.ctx, bucket, is_empty=not page.objects)

    async def head_bucket(self, bucket: str) -> BucketInfo:
        return await buckets.head_bucket(self.ctx, bucket)

    async def list_buckets(self) -> list[BucketInfo]:
        return await buckets.list_buckets(self.ctx)

    async def get_bucket_config(self, bucket: str, name: str) -> bytes | None:
        return await buckets.get_bucket_config(self.ctx, bucket, name)

    async def put_bucket_config(self, bucket: str, name: str, value: bytes | None) -> None:
        await buckets.put_bucket_config(self.ctx, bucket, name, value)

    # ---- objects ----

    async def put_object(self, bucket: str, key: str, body: BodyStream, *, size: int | None,
                         metadata: PutMetadata, sse: SSEParams | None = None,
                         expected_md5: bytes | None = None) -> ObjectInfo:
        if sse is not None:
            raise _no_encryption(f"put {bucket}/{key}")
        return await put.put_stream(self.ctx, bucket, key, body, size=size, metadata=metadata,
                                    expected_md5=expected_md5)

    async def open_object(self, bucket: str, key: str, *, version_id: str | None = None,
                          sse_c: SSECustomerKey | None = None) -> ErasureObjectReader:
        eset = self.ctx.placement.locate(bucket, key)
        chosen = await read_version(self.ctx, bucket, key, eset, version_id=version_id or "")
        if chosen.delete_marker:
            raise oe.ObjectNotFound(f"{bucket}/{key} was deleted")
        self.ctx.record_heal(bucket, key, chosen.version_id, "meta-stale", chosen.stale)
        if chosen.meta.encryption:
            raise _no_encryption(f"get {bucket}/{key}")
        if sse_c is not None:
            raise oe.SSENotApplicable(f"{bucket}/{key} is not encrypted with a customer key")
        info = chosen.meta.object_info(bucket, key, chosen.version_id)
        return ErasureObjectReader(self.ctx, info, chosen)

    async def delete_object(self, bucket: str, key: str) -> None:
        await put.delete_object(self.ctx, bucket, key)

    async def list_objects(self, bucket: str, *, prefix: str = "", start_after: str = "",
                           limit: int = 1000) -> ListPage:
        return await listing.list_objects(self.ctx, bucket, prefix=prefix,
                                          start_after=start_after, limit=limit)

    async def update_metadata(self, bucket: str, key: str, version_id: str, *,
                              rewrap: SSEParams | None = None) -> ObjectInfo:
        def same(meta: ObjectMeta) -> ObjectMeta:
            if rewrap is not None and not meta.encryption:
                raise oe.InvalidInput(f"{bucket}/{key} is not encrypted; nothing to re-wrap")
            if rewrap is not None:
                raise _no_encryption(f"rotate {bucket}/{key}")
            return meta
        return await self.rewrite_metadata(bucket, key, version_id, same)

    async def rewrite_metadata(self, bucket: str, key: str, version_id: str,
                               change: Callable[[ObjectMeta], ObjectMeta]) -> ObjectInfo:
        """Replaces one version's metadata in place on its holders (UpdateMeta), with write
        quorum; the seam key rotation uses to re-seal keys without touching shards."""
        eset = self.ctx.placement.locate(bucket, key)
        chosen = await read_version(self.ctx, bucket, key, eset, version_id=version_id,
                                    include_inline=False)
        if chosen.delete_marker:
            raise oe.ObjectNotFound(f"{bucket}/{key} was deleted")
        meta = change(chosen.meta)
        request = pb.UpdateMetaRequest(bucket=bucket, key=key, version_id=chosen.version_id,
                                       meta=meta.to_bytes())
        timeout = self.ctx.timeouts.unary
        quorum = meta.erasure.data_shards if meta.erasure.data_shards > \
            meta.erasure.parity_shards else meta.erasure.data_shards + 1
        out = await fan_out(list(chosen.holders), lambda n: self.ctx.pool.client(n).unary(
            "UpdateMeta", request, deadline=timeout), quorum=quorum, timeout=timeout + 1)
        out.require(write=True, what=f"update metadata of {bucket}/{key}")
        return meta.object_info(bucket, key, chosen.version_id)

    # ---- multipart ----

    async def create_multipart_upload(self, bucket: str, key: str, *, metadata: PutMetadata,
                                      sse: SSEParams | None = None) -> UploadInfo:
        if sse is not None:
            raise _no_encryption(f"create upload {bucket}/{key}")
        return await multipart.create_upload(self.ctx, bucket, key, metadata)

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        return (await multipart.get_upload(self.ctx, bucket, key, upload_id)).info

    async def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int,
                          body: BodyStream, *, size: int | None,
                          sse_c: SSECustomerKey | None = None,
                          expected_md5: bytes | None = None,
                          checksums: Mapping[str, str] | None = None) -> PartInfo:
        stored = await multipart.get_upload(self.ctx, bucket, key, upload_id)
        if stored.meta.encryption:
            raise _no_encryption(f"upload part to {bucket}/{key}")
        return await multipart.upload_part(self.ctx, stored.info, part_number, body, size=size,
                                           expected_md5=expected_md5, checksums=checksums)

    async def list_parts(self, bucket: str, key: str, upload_id: str, *,
                         part_number_marker: int = 0,
                         limit: int = 1000) -> tuple[list[PartInfo], bool]:
        stored = await multipart.get_upload(self.ctx, bucket, key, upload_id)
        return await multipart.list_parts(self.ctx, stored.info,
                                          part_number_marker=part_number_marker, limit=limit)

    async def list_multipart_uploads(self, bucket: str, *, prefix: str = "",
                                     key_marker: str = "", upload_id_marker: str = "",
                                     limit: int = 1000) -> tuple[list[UploadInfo], bool]:
        return await multipart.list_uploads(self.ctx, bucket, prefix=prefix,
                                            key_marker=key_marker,
                                            upload_id_marker=upload_id_marker, limit=limit)

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        stored = await multipart.get_upload(self.ctx, bucket, key, upload_id)
        await multipart.abort_upload(self.ctx, stored.info)

    async def complete_multipart_upload(self, bucket: str, key: str, upload_id: str,
                                        parts: list[CompletedPart], *,
                                        sse_c: SSECustomerKey | None = None,
                                        checksums: Mapping[str, str] | None = None,
                                        ) -> ObjectInfo:
        stored = await multipart.get_upload(self.ctx, bucket, key, upload_id)
        return await multipart.complete_upload(self.ctx, stored, parts, checksums=checksums)

    # ---- health and statistics ----

    async def probe_cluster(self) -> ClusterHealth:
        """Which nodes answer now, and whether every set has its write quorum (`.ok`)."""
        return await probe_cluster(self.ctx)

    def statistics(self) -> LayerStatistics:
        return LayerStatistics(nodes=tuple(self.ctx.pool.statistics()),
                               heal_queue=self.ctx.heal.statistics())

    # ---- lifecycle ----

    async def close(self) -> None:
        await self.ctx.pool.close()
        self.ctx.executor.shutdown(wait=False)


def build_erasure_layer(
    topology_path: str | Path,
    *,
    node_cert: str | Path | None = None,
    node_key: str | Path | None = None,
    node_ca: str | Path | None = None,
    parity: int | None = None,
    heal_queue: HealQueue | None = None,
    timeouts: Timeouts | None = None,
    backoff: float = 10.0,
) -> ErasureObjectLayer:
    """The gateway's erasure-coded backend for the nodes of a topology file.

    `node_cert`/`node_key`/`node_ca`: the gateway's client certificate for mTLS to nodes and
    the cluster CA (all three, or none for an `--insecure` cluster). `parity`: m, e.g. from
    `placement.parity_from_env()` (MINIO_STORAGE_CLASS_STANDARD); None = MinIO's default for
    the set size. `backoff`: seconds a failed node is skipped before one request probes it.
    Also tunes glibc malloc for zfec (process-wide). Call `close()` on shutdown.
    """
    given = [p for p in (node_cert, node_key, node_ca) if p is not None]
    if given and len(given) != 3:
        raise ValueError("node TLS needs all of node_cert, node_key and node_ca")
    tls = NodeTLS.from_files(node_ca, node_cert, node_key) if given else None  # type: ignore[arg-type]
    topology = Topology.load(Path(topology_path))
    tune_malloc()
    pool = NodePool.from_topology(topology, tls, timeouts=timeouts, backoff=backoff)
    workers = max(2, os.cpu_count() or 2)
    ctx = LayerContext(pool=pool, placement=Placement(topology, parity),
                       heal=heal_queue or MemoryHealQueue(),
                       executor=ThreadPoolExecutor(workers, thread_name_prefix="erasure"))
    return ErasureObjectLayer(ctx)
