"""`python -m gateway.rotate --to-key KEY [--bucket B] [--cluster .cluster]`: re-wrap the
sealed keys of a bucket's (or every bucket's) SSE-S3 and SSE-KMS objects under another KES key,
without rewriting their data.

It talks to the storage nodes through the object layer, with a gateway's configuration: the
node certificates and topology (`--topology/--node-cert/--node-key/--node-ca`, or all of it
read from a `make cluster` directory with `--cluster`) and the KES pool of
`MINIO_KMS_KES_*` (or the cluster's). Per object: one KES decrypt with the old key, one
generate with the new one, and a metadata rewrite on the nodes (UpdateMeta); objects stay
SSE-S3 or SSE-KMS (with their context). SSE-C and unencrypted objects are skipped.

Resumable: a JSON checkpoint (bucket and last key done) is written after every page; run the
same command again to go on. `--max-objects N` stops after N re-wraps (rotate in batches).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from gateway.app import build_encryption, build_kms
from gateway.config import ConfigError, kms_settings_from_env
from gateway.crypto.kms import valid_key_name
from gateway.crypto.metadata import EncryptionMetadata
from gateway.objects import errors as oe
from gateway.objects import listing
from gateway.objects.api import ObjectInfo, SSEParams
from gateway.objects.erasure_layer import ErasureObjectLayer, build_erasure_layer

__all__ = ["Checkpoint", "main", "rotate"]

PAGE = 500


@dataclass
class Checkpoint:
    """Where a rotation got to: buckets before `bucket` are done, and `bucket` up to `after`."""

    path: Path
    to_key: str
    buckets: list[str]
    bucket: str = ""
    after: str = ""
    counts: Counter[str] = field(default_factory=Counter)
    done: bool = False

    @classmethod
    def load(cls, path: Path, to_key: str, buckets: list[str]) -> Checkpoint:
        if not path.exists():
            return cls(path, to_key, buckets)
        doc = json.loads(path.read_text())
        if doc.get("to_key") != to_key or doc.get("buckets") != buckets:
            raise ConfigError(f"checkpoint {path} is for another rotation (key "
                              f"{doc.get('to_key')!r}, buckets {doc.get('buckets')}); remove it "
                              "to start over")
        return cls(path, to_key, buckets, doc.get("bucket", ""), doc.get("after", ""),
                   Counter(doc.get("counts", {})), bool(doc.get("done")))

    def save(self) -> None:
        doc = {"to_key": self.to_key, "buckets": self.buckets, "bucket": self.bucket,
               "after": self.after, "counts": dict(self.counts), "done": self.done}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=1) + "\n")
        tmp.replace(self.path)


# an object's encryption record, as a listing reports it (None: not encrypted)
Sealed = Mapping[str, Any] | None


def _why_skipped(sealed: Sealed, to_key: str) -> str | None:
    if not sealed:
        return "unencrypted"
    record = EncryptionMetadata.from_dict(sealed)
    if record.mode == "SSE-C":
        return "SSE-C"
    if record.kms_key_id == to_key:
        return "already on the key"
    return None


async def _page(layer: ErasureObjectLayer, bucket: str,
                after: str) -> tuple[list[tuple[ObjectInfo, Sealed]], bool]:
    entries: list[tuple[ObjectInfo, Sealed]] = []

    async def keep(found: Sequence[tuple[ObjectInfo, Sealed]]) -> list[ObjectInfo]:
        entries.extend(found)  # no ETag unsealing: only the records are needed here
        return [info for info, _ in found]

    page = await listing.list_objects(layer.ctx, bucket, start_after=after, limit=PAGE,
                                      finish=keep)
    return entries, page.truncated


async def _rewrap(layer: ErasureObjectLayer, bucket: str, info: ObjectInfo, sealed: Sealed,
                  to_key: str) -> str:
    record = EncryptionMetadata.from_dict(sealed or {})
    target = SSEParams(record.mode, kms_key_id=to_key, kms_context=record.kms_context)
    try:
        await layer.update_metadata(bucket, info.key, info.version_id, rewrap=target)
    except (oe.ObjectNotFound, oe.VersionNotFound):
        return "replaced or deleted meanwhile"
    return "re-wrapped"


async def rotate(layer: ErasureObjectLayer, buckets: list[str], to_key: str,
                 checkpoint: Checkpoint, *, max_objects: int | None = None,
                 concurrency: int = 8, out: TextIO = sys.stdout) -> bool:
    """Re-wraps what the checkpoint has not done yet; True when every bucket is done."""
    slots = asyncio.Semaphore(concurrency)
    budget = max_objects

    async def one(bucket: str, info: ObjectInfo, sealed: Sealed) -> str:
        why = _why_skipped(sealed, to_key)
        if why is not None:
            return f"skipped: {why}"
        async with slots:
            return await _rewrap(layer, bucket, info, sealed, to_key)

    for bucket in buckets:
        if checkpoint.bucket and bucket < checkpoint.bucket:
            continue
        after = checkpoint.after if bucket == checkpoint.bucket else ""
        checkpoint.bucket, checkpoint.after = bucket, after
        while True:
            entries, truncated = await _page(layer, bucket, after)
            if budget is not None:  # stop at the budget, at an object boundary
                todo = [i for i, (_, m) in enumerate(entries) if _why_skipped(m, to_key) is None]
                if len(todo) > budget:
                    entries, truncated = entries[:todo[budget]], True
            outcomes = await asyncio.gather(*(one(bucket, i, m) for i, m in entries),
                                            return_exceptions=True)
            failed = next((i for i, o in enumerate(outcomes) if isinstance(o, BaseException)),
                          None)
            done = outcomes if failed is None else outcomes[:failed]
            checkpoint.counts.update(str(o) for o in done)
            if done:
                checkpoint.after = after = entries[len(done) - 1][0].key
            checkpoint.save()
            rewrapped = sum(o == "re-wrapped" for o in done)
            if budget is not None:
                budget -= rewrapped
            _progress(out, bucket, checkpoint, len(done))
            if failed is not None:
                error = outcomes[failed]
                print(f"rotate: {bucket}/{entries[failed][0].key}: "
                      f"{type(error).__name__}: {error}; run again to resume", file=out)
                raise error  # type: ignore[misc]
            if not truncated:
                break
            if budget == 0:
                print(f"rotate: stopped after --max-objects; checkpoint {checkpoint.path}",
                      file=out)
                return False
        checkpoint.after = ""
    checkpoint.done = True
    checkpoint.save()
    print(f"rotate: done: {_summary(checkpoint.counts)}", file=out)
    return True


def _summary(counts: Mapping[str, int]) -> str:
    return ", ".join(f"{n} {what}" for what, n in sorted(counts.items())) or "no objects"


def _progress(out: TextIO, bucket: str, checkpoint: Checkpoint, seen: int) -> None:
    print(f"rotate: {bucket}: {seen} objects up to {checkpoint.after!r}; so far "
          f"{_summary(checkpoint.counts)}", file=out, flush=True)


# ---- command line ----


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m gateway.rotate", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--to-key", required=True, help="KES key to re-wrap the objects' keys under")
    p.add_argument("--bucket", action="append", help="bucket to rotate (repeatable; default: "
                                                      "every bucket)")
    p.add_argument("--cluster", help="a `make cluster` directory: topology, certificates and "
                                     "KES settings are read from it")
    p.add_argument("--topology", help="topology.json of the storage nodes")
    p.add_argument("--node-cert", help="client certificate for mTLS to storage nodes")
    p.add_argument("--node-key", help="private key of --node-cert")
    p.add_argument("--node-ca", help="CA certificate of the storage nodes")
    p.add_argument("--checkpoint", help="checkpoint file (default: rotate-<key>.json in the "
                                        "cluster directory, else the current one)")
    p.add_argument("--max-objects", type=int, help="stop after re-wrapping this many objects")
    p.add_argument("--concurrency", type=int, default=8, help="objects in flight (default 8)")
    return p


@dataclass(frozen=True)
class _Setup:
    topology: str
    node_tls: tuple[str, str, str] | None
    env: dict[str, str]
    checkpoint: Path


def _setup(args: argparse.Namespace, environ: Mapping[str, str]) -> _Setup:
    env = dict(environ)
    if args.cluster:
        root = Path(args.cluster)
        try:
            doc: dict[str, Any] = json.loads((root / "cluster.json").read_text())
        except (OSError, ValueError) as exc:
            raise ConfigError(f"--cluster {root}: cannot read cluster.json: {exc}") from None
        meta = doc["meta"]
        gateway = next((p for p in doc["processes"] if p["role"] == "gateway"), None)
        if gateway is None or not meta.get("kes_endpoints"):
            raise ConfigError(f"--cluster {root}: no gateway or no KES in this cluster")
        env.update({"MINIO_KMS_KES_ENDPOINT": ",".join(meta["kes_endpoints"]),
                    "MINIO_KMS_KES_CERT_FILE": meta["kes_client_cert"],
                    "MINIO_KMS_KES_KEY_FILE": meta["kes_client_key"],
                    "MINIO_KMS_KES_CAPATH": meta["ca"],
                    "MINIO_KMS_KES_KEY_NAME": meta["kes_key_name"]})
        tls = None
        if meta.get("spec", {}).get("tls_nodes", True):
            tls = (gateway["cert"], gateway["key"], meta["ca"])
        default = root / f"rotate-{args.to_key}.json"
        return _Setup(str(root / "topology.json"), tls, env, Path(args.checkpoint or default))
    if not args.topology:
        raise ConfigError("give --cluster DIR, or --topology (with --node-cert/--node-key/"
                          "--node-ca for mTLS) and the MINIO_KMS_KES_* variables")
    given = (args.node_cert, args.node_key, args.node_ca)
    if any(given) and not all(given):
        raise ConfigError("--node-cert, --node-key and --node-ca go together")
    default = Path(f"rotate-{args.to_key}.json")
    return _Setup(args.topology, given if all(given) else None, env,
                  Path(args.checkpoint or default))


async def _main(args: argparse.Namespace, setup: _Setup) -> int:
    settings = kms_settings_from_env(setup.env)
    if settings is None:
        raise ConfigError("no KMS configured: set MINIO_KMS_KES_ENDPOINT (or use --cluster)")
    kms = build_kms(settings)
    assert kms is not None
    cert, key, ca = setup.node_tls or (None, None, None)
    layer = build_erasure_layer(setup.topology, node_cert=cert, node_key=key, node_ca=ca,
                                encryption=build_encryption(settings, kms))
    try:
        if not await kms.key_exists(args.to_key):
            print(f"rotate: the KES key {args.to_key!r} does not exist", file=sys.stderr)
            return 1
        buckets = sorted(args.bucket or [b.name for b in await layer.list_buckets()])
        for bucket in buckets:
            await layer.head_bucket(bucket)
        checkpoint = Checkpoint.load(setup.checkpoint, args.to_key, buckets)
        if checkpoint.done:
            print(f"rotate: already done ({_summary(checkpoint.counts)}); remove "
                  f"{checkpoint.path} to run again")
            return 0
        if checkpoint.bucket:
            print(f"rotate: resuming at {checkpoint.bucket}/{checkpoint.after!r}")
        finished = await rotate(layer, buckets, args.to_key, checkpoint,
                                max_objects=args.max_objects, concurrency=args.concurrency)
        return 0 if finished else 3
    finally:
        await layer.close()
        await kms.aclose()


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if not valid_key_name(args.to_key):
            raise ConfigError(f"--to-key {args.to_key!r} is not a valid KES key name")
        if args.max_objects is not None and args.max_objects < 1:
            raise ConfigError("--max-objects must be at least 1")
        setup = _setup(args, os.environ if environ is None else environ)
        return asyncio.run(_main(args, setup))
    except ConfigError as exc:
        print(f"rotate: {exc}", file=sys.stderr)
        return 2
    except oe.ObjectLayerError as exc:
        print(f"rotate: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
