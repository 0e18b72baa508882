"""The erasure-coded object layer over the storage nodes (implements `ObjectLayer`), and the
factory the gateway's entry point uses to build it.

Each operation lives in its own module (put, get, listing, multipart, buckets); this class
wires them to one shared `LayerContext`. Encryption (gateway/objects/encryption.py, over
gateway/crypto) plugs in at the seams: `put_stream`'s sealer and record, the reader's
`stored_part_blocks` / `rebuild_block`, the listing's `finish`, and `rewrite_metadata`.
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from common.endpoint_health import EndpointState
from common.topology import Topology
from gateway.crypto.envelope import ObjectEncryption, check_unencrypted_read, object_encryptor
from gateway.crypto.metadata import EncryptionMetadata
from gateway.erasure import tune_malloc
from gateway.heal_queue import HealQueue, HealQueueStatistics, MemoryHealQueue
from gateway.node_pool import NodePool
from gateway.objects import buckets, listing, multipart, put, upload_listing
from gateway.objects import errors as oe
from gateway.objects.api import (
    MAX_PART_NUMBER,
    BodyStream,
    BucketInfo,
    CompletedPart,
    ListPage,
    ObjectInfo,
    ObjectReader,
    PartInfo,
    PutMetadata,
    SSECustomerKey,
    SSEParams,
    UploadInfo,
)
from gateway.objects.context import LayerContext
from gateway.objects.encryption import (
    EncryptingSealer,
    ObjectSealing,
    client_etag,
    encrypted_reader,
    open_upload,
    rekey,
    unseal_listing,
)
from gateway.objects.get import ErasureObjectReader
from gateway.objects.health import ClusterHealth, probe_cluster
from gateway.objects.metadata import ObjectMeta
from gateway.objects.quorum import fan_out
from gateway.objects.versions import read_version
from gateway.placement import Placement, write_quorum
from gateway.storage_client import NodeTLS, Timeouts
from proto import storage_pb2 as pb

if TYPE_CHECKING:
    from gateway.healing.service import HealService

__all__ = ["ErasureObjectLayer", "LayerStatistics", "build_erasure_layer"]

# "off": one-block PUTs stream (WriteShard) instead of one WriteShardOnce call per node
ENV_WRITE_ONCE = "TESSERA_GATEWAY_WRITE_ONCE"


@dataclass(frozen=True)
class LayerStatistics:
    """For /metrics and the admin summary: each node's health memory, the heal backlog."""

    nodes: tuple[EndpointState, ...]
    heal_queue: HealQueueStatistics
    # objects written with more parity than configured because nodes of their set were
    # offline (MinIO's parity upgrade), since this gateway started
    parity_upgrades: int = 0


class ErasureObjectLayer:
    """Buckets, objects and multipart uploads on erasure-coded storage nodes.

    `encryption`: seals and opens object keys; without a KMS it still serves SSE-C, and
    SSE-S3/SSE-KMS requests get KMSNotConfigured (501)."""

    def __init__(self, ctx: LayerContext, encryption: ObjectEncryption | None = None):
        self.ctx = ctx
        self.encryption = encryption or ObjectEncryption(None)
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
        if sse is None:
            return await put.put_stream(self.ctx, bucket, key, body, size=size,
                                        metadata=metadata, expected_md5=expected_md5)
        # the object key is sealed (KMS generate) before a byte of the body is read
        sealed = await self.encryption.seal_new(sse, bucket, key)
        sealer = EncryptingSealer(object_encryptor(sealed.object_key), self.ctx.block_size)
        return await put.put_stream(self.ctx, bucket, key, body, size=size, metadata=metadata,
                                    expected_md5=expected_md5, sealer=sealer,
                                    encryption=ObjectSealing(sealed),
                                    want_md5=sse.mode == "SSE-S3")

    async def open_object(self, bucket: str, key: str, *, version_id: str | None = None,
                          sse_c: SSECustomerKey | None = None,
                          read_ahead: bool = False) -> ObjectReader:
        eset = self.ctx.placement.locate(bucket, key)
        chosen = await read_version(self.ctx, bucket, key, eset, version_id=version_id or "",
                                    hedged=True,
                                    head_bytes=self.ctx.head_bytes if read_ahead else 0)
        if chosen.delete_marker:
            raise oe.ObjectNotFound(f"{bucket}/{key} was deleted")
        self.ctx.record_heal(bucket, key, chosen.version_id, "meta-stale", chosen.stale)
        info = chosen.meta.object_info(bucket, key, chosen.version_id)
        reader = ErasureObjectReader(self.ctx, info, chosen)
        if chosen.meta.encryption:
            return await encrypted_reader(self.encryption, reader, sse_c)
        check_unencrypted_read(sse_c)
        return reader

    async def delete_object(self, bucket: str, key: str) -> None:
        await put.delete_object(self.ctx, bucket, key)

    async def list_objects(self, bucket: str, *, prefix: str = "", start_after: str = "",
                           limit: int = 1000, delimiter: str = "") -> ListPage:
        return await listing.list_objects(
            self.ctx, bucket, prefix=prefix, start_after=start_after, limit=limit,
            delimiter=delimiter,
            finish=lambda entries: unseal_listing(self.encryption, bucket, entries))

    async def update_metadata(self, bucket: str, key: str, version_id: str, *,
                              rewrap: SSEParams | None = None,
                              sse_c: SSECustomerKey | None = None,
                              metadata: PutMetadata | None = None,
                              tags: Mapping[str, str] | None = None) -> ObjectInfo:
        """Rewrites one version's metadata in place, its data untouched.

        rewrap: re-seal the object key exactly as these parameters ask (key rotation; a
            CopyObject onto itself that changes the encryption); `sse_c` is the object's
            current customer key when it is SSE-C. The object key, hence the data, stays.
        metadata: new user metadata; also sets the modification time to now (CopyObject).
        tags: the new tag set (object tagging); the modification time stays, as on S3.
        """
        opened: list[tuple[EncryptionMetadata, bytes]] = []

        async def change(meta: ObjectMeta) -> ObjectMeta:
            if rewrap is not None:
                if not meta.encryption:
                    raise oe.InvalidInput(f"{bucket}/{key} is not encrypted; nothing to "
                                          "re-wrap")
                resealed, object_key = await rekey(self.encryption, meta.encryption, bucket,
                                                   key, rewrap, sse_c)
                opened.append((resealed, object_key))
                meta = replace(meta, encryption=resealed.to_dict())
            if metadata is not None:
                meta = replace(meta, metadata=metadata, mod_time_ns=time.time_ns())
            if tags is not None:
                meta = replace(meta, metadata=replace(meta.metadata, tags=dict(tags)))
            return meta

        info = await self.rewrite_metadata(bucket, key, version_id, change)
        if opened:
            resealed, object_key = opened[0]
            info = replace(info, etag=client_etag(resealed, info.etag, object_key))
        return info

    async def object_tags(self, bucket: str, key: str, *,
                          version_id: str | None = None) -> tuple[str, Mapping[str, str]]:
        eset = self.ctx.placement.locate(bucket, key)
        chosen = await read_version(self.ctx, bucket, key, eset, version_id=version_id or "",
                                    include_inline=False)
        if chosen.delete_marker:
            raise oe.ObjectNotFound(f"{bucket}/{key} was deleted")
        return chosen.version_id, dict(chosen.meta.metadata.tags)

    async def rewrite_metadata(
            self, bucket: str, key: str, version_id: str,
            change: Callable[[ObjectMeta], ObjectMeta | Awaitable[ObjectMeta]]) -> ObjectInfo:
        """Replaces one version's metadata in place on its holders (UpdateMeta), with write
        quorum; the seam key rotation uses to re-seal keys without touching shards."""
        eset = self.ctx.placement.locate(bucket, key)
        chosen = await read_version(self.ctx, bucket, key, eset, version_id=version_id,
                                    include_inline=False)
        if chosen.delete_marker:
            raise oe.ObjectNotFound(f"{bucket}/{key} was deleted")
        changed = change(chosen.meta)
        meta = await changed if inspect.isawaitable(changed) else changed
        request = pb.UpdateMetaRequest(bucket=bucket, key=key, version_id=chosen.version_id,
                                       meta=meta.to_bytes())
        timeout = self.ctx.timeouts.unary
        quorum = write_quorum(meta.erasure.data_shards, meta.erasure.parity_shards)
        out = await fan_out(list(chosen.holders), lambda n: self.ctx.pool.client(n).unary(
            "UpdateMeta", request, deadline=timeout), quorum=quorum, timeout=timeout + 1)
        # A node left with the old metadata (its call failed, or it lacks the version) would
        # serve it until healed: queue it now instead of waiting for the scanner to notice.
        updated = {r.node for r in out.results if r.ok}
        self.ctx.record_heal(bucket, key, chosen.version_id, "meta-stale",
                             [n for n in eset.nodes if n not in updated])
        out.require(write=True, what=f"update metadata of {bucket}/{key}")
        return meta.object_info(bucket, key, chosen.version_id)

    # ---- multipart ----

    async def create_multipart_upload(self, bucket: str, key: str, *, metadata: PutMetadata,
                                      sse: SSEParams | None = None) -> UploadInfo:
        record = None
        if sse is not None:
            sealed = await self.encryption.seal_new(sse, bucket, key, multipart=True)
            record = sealed.metadata.to_dict()
        return await multipart.create_upload(self.ctx, bucket, key, metadata, record)

    async def get_upload(self, bucket: str, key: str, upload_id: str) -> UploadInfo:
        return (await multipart.get_upload(self.ctx, bucket, key, upload_id)).info

    async def upload_part(self, bucket: str, key: str, upload_id: str, part_number: int,
                          body: BodyStream, *, size: int | None,
                          sse_c: SSECustomerKey | None = None,
                          expected_md5: bytes | None = None,
                          checksums: Mapping[str, str] | None = None) -> PartInfo:
        stored = await multipart.get_upload(self.ctx, bucket, key, upload_id)
        if not stored.meta.encryption:
            check_unencrypted_read(sse_c)
            return await multipart.upload_part(self.ctx, stored, part_number, body,
                                               size=size, expected_md5=expected_md5,
                                               checksums=checksums)
        if not 1 <= part_number <= MAX_PART_NUMBER:
            raise oe.InvalidInput(f"part number {part_number} outside 1..{MAX_PART_NUMBER}")
        opened = await open_upload(self.encryption, stored.meta.encryption, bucket, key, sse_c,
                                   need_key=True)
        sealer, sealing = opened.part_sealer(self.ctx.block_size, part_number)
        return await multipart.upload_part(self.ctx, stored, part_number, body, size=size,
                                           expected_md5=expected_md5, checksums=checksums,
                                           sealer=sealer, encryption=sealing,
                                           want_md5=opened.meta.mode == "SSE-S3")

    async def list_parts(self, bucket: str, key: str, upload_id: str, *,
                         part_number_marker: int = 0,
                         limit: int = 1000) -> tuple[list[PartInfo], bool]:
        stored = await multipart.get_upload(self.ctx, bucket, key, upload_id)
        if not stored.meta.encryption:
            return await multipart.list_parts(self.ctx, stored,
                                              part_number_marker=part_number_marker,
                                              limit=limit)
        opened = await open_upload(self.encryption, stored.meta.encryption, bucket, key, None,
                                   need_key=False)
        return await multipart.list_parts(self.ctx, stored,
                                          part_number_marker=part_number_marker, limit=limit,
                                          part_etag=opened.part_etag)

    async def list_multipart_uploads(self, bucket: str, *, prefix: str = "",
                                     key_marker: str = "", upload_id_marker: str = "",
                                     limit: int = 1000) -> tuple[list[UploadInfo], bool]:
        return await upload_listing.list_uploads(self.ctx, bucket, prefix=prefix,
                                                 key_marker=key_marker,
                                                 upload_id_marker=upload_id_marker, limit=limit)

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        stored = await multipart.get_upload(self.ctx, bucket, key, upload_id)
        await multipart.abort_upload(self.ctx, stored)

    async def complete_multipart_upload(self, bucket: str, key: str, upload_id: str,
                                        parts: list[CompletedPart], *,
                                        sse_c: SSECustomerKey | None = None,
                                        checksums: Mapping[str, str] | None = None,
                                        ) -> ObjectInfo:
        stored = await multipart.get_upload(self.ctx, bucket, key, upload_id)
        if not stored.meta.encryption:
            check_unencrypted_read(sse_c)
            return await multipart.complete_upload(self.ctx, stored, parts, checksums=checksums)
        opened = await open_upload(self.encryption, stored.meta.encryption, bucket, key, sse_c,
                                   need_key=False)
        return await multipart.complete_upload(self.ctx, stored, parts, checksums=checksums,
                                               sealing=opened)

    # ---- health and statistics ----

    async def probe_cluster(self) -> ClusterHealth:
        """Which nodes answer now, and whether every set has its write quorum (`.ok`)."""
        return await probe_cluster(self.ctx)

    def statistics(self) -> LayerStatistics:
        return LayerStatistics(nodes=tuple(self.ctx.pool.statistics()),
                               heal_queue=self.ctx.heal.statistics(),
                               parity_upgrades=self.ctx.parity_upgrades)

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
    encryption: ObjectEncryption | None = None,
) -> ErasureObjectLayer:
    """The gateway's erasure-coded backend for the nodes of a topology file.

    `node_cert`/`node_key`/`node_ca`: the gateway's client certificate for mTLS to nodes and
    the cluster CA (all three, or none for an `--insecure` cluster). `parity`: m, e.g. from
    `placement.parity_from_env()` (MINIO_STORAGE_CLASS_STANDARD); None = MinIO's default for
    the set size. `backoff`: seconds a failed node is skipped before one request probes it.
    `encryption`: the gateway's ObjectEncryption (its KMS); None = SSE-C only.
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
                       executor=ThreadPoolExecutor(workers, thread_name_prefix="erasure"),
                       write_once=os.environ.get(ENV_WRITE_ONCE, "on") != "off")
    return ErasureObjectLayer(ctx, encryption)
