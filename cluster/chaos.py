"""The chaos load: a bounded, concurrent, mixed S3 load through every gateway of a cluster,
verifying every read bit-exact (the chaos tests drive it; `python -m cluster load` runs it).

- Operations: PUT, GET, LIST, DELETE in `LoadSpec.mix` proportions on a pool of keys, each key
  used by one request at a time (cluster/load_state.py tracks what each key may hold).
- Sizes: mostly 1-64 KiB, some up to 1 MiB, a few large ones up to `max_size` (20 MiB), the
  total bounded by `max_bytes`.
- Encryption: plain, SSE-S3 and SSE-C (SSE-C over the gateways' HTTPS port, verified with the
  cluster CA); SSE-S3 only when the cluster has a KMS.
- Clients behave like SDK users: boto3 in standard retry mode (503 SlowDown, 5xx, timeouts and
  connection errors are retried with backoff), and like a load balancer over the gateways: a
  gateway that refuses connections is skipped for a few seconds, and a request that exhausted
  its retries on it is sent to another gateway ("failover").
- A failure is a request that still failed after all that, a read that returned other bytes
  than an acknowledged write (corruption), or an acknowledged object that is gone (lost).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import random
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from common.endpoint_health import EndpointHealth

from .load_report import MIB, LoadReport
from .load_state import ABSENT, Expected, KeyBook, KeyState

__all__ = ["ChaosLoad", "GatewayEndpoint", "LoadReport", "LoadSpec", "run_load"]

KIB = 1024
_CONNECTION_ERRORS = ("EndpointConnectionError", "ConnectionClosedError",
                      "ConnectTimeoutError", "ReadTimeoutError", "ConnectionError")


@dataclass(frozen=True)
class GatewayEndpoint:
    name: str
    http_url: str
    https_url: str


@dataclass
class LoadSpec:
    """What to run. Every loop is bounded by `operations` and `max_seconds`."""

    operations: int = 400
    concurrency: int = 8
    bucket: str = "chaos-load"
    prefix: str = "obj-"
    keys: int = 120
    max_size: int = 20 * MIB
    large_fraction: float = 0.03  # PUTs of 1 MiB..max_size
    max_bytes: int = 160 * MIB  # bytes PUT in total; large PUTs shrink beyond it
    mix: dict[str, float] = field(default_factory=lambda: {"put": 0.40, "get": 0.35,
                                                           "list": 0.08, "delete": 0.17})
    sse: dict[str, float] = field(default_factory=lambda: {"plain": 0.4, "sse-s3": 0.3,
                                                           "sse-c": 0.3})
    max_attempts: int = 5  # boto3 standard retry mode: attempts per request
    read_timeout: float = 30.0
    max_seconds: float = 300.0
    seed: int | None = None


class _Gateway:
    """One gateway's boto3 clients (HTTP and HTTPS) and its health as the load sees it."""

    def __init__(self, endpoint: GatewayEndpoint, make_client: Callable[[str, bool], Any],
                 on_attempt: Callable[..., None]):
        self.name = endpoint.name
        self.health = EndpointHealth(endpoint.name, backoff=3.0)
        self.http = make_client(endpoint.http_url, False)
        self.https = make_client(endpoint.https_url, True)
        for client in (self.http, self.https):
            client.meta.events.register("before-send.s3", on_attempt)
            client.meta.events.register("needs-retry.s3", self._on_retry)

    def _on_retry(self, caught_exception: BaseException | None = None, **_: Any) -> None:
        # other workers stop choosing this gateway now, not after this request's retries
        if caught_exception is not None and type(caught_exception).__name__ in \
                _CONNECTION_ERRORS:
            self.health.failure(type(caught_exception).__name__)


class ChaosLoad:
    """Runs a `LoadSpec` against gateways; `run()` blocks, `start()`/`join()` run it in the
    background while a test breaks things; `verify_all()` reads back every object."""

    def __init__(self, gateways: Sequence[GatewayEndpoint], access: str, secret: str,
                 ca: str, spec: LoadSpec, *, kms: bool = True):
        import boto3
        from botocore.config import Config

        self.spec = spec
        self.report = LoadReport()
        self.book = KeyBook(spec.prefix, spec.keys)
        self.modes = {m: w for m, w in spec.sse.items() if w > 0 and (kms or m != "sse-s3")}
        self._rng = random.Random(spec.seed)
        self._rng_lock = threading.Lock()
        self._done = 0
        self._progress = threading.Condition()
        self._thread: threading.Thread | None = None
        self._next_gateway = 0
        config = Config(retries={"max_attempts": spec.max_attempts, "mode": "standard"},
                        connect_timeout=5, read_timeout=spec.read_timeout,
                        max_pool_connections=spec.concurrency + 2,
                        s3={"addressing_style": "path"})
        session = boto3.session.Session()

        def make_client(url: str, https: bool) -> Any:
            return session.client("s3", endpoint_url=url, aws_access_key_id=access,
                                  aws_secret_access_key=secret, region_name="us-east-1",
                                  verify=ca if https else None, config=config)

        self.gateways = [_Gateway(g, make_client, self._attempt) for g in gateways]

    # ---- running ----

    def _attempt(self, **_: Any) -> None:
        self.report.add(attempts=1)

    @property
    def done(self) -> int:
        return self._done

    def wait_progress(self, count: int, timeout: float) -> bool:
        """Blocks until `count` operations have finished (or the load ended)."""
        with self._progress:
            return self._progress.wait_for(
                lambda: self._done >= count or (self._thread is not None
                                                and not self._thread.is_alive()), timeout)

    def start(self) -> None:
        self._thread = threading.Thread(target=self.run, name="chaos-load", daemon=True)
        self._thread.start()

    def join(self, timeout: float | None = None) -> LoadReport:
        assert self._thread is not None
        self._thread.join(timeout if timeout is not None else self.spec.max_seconds + 60)
        if self._thread.is_alive():
            raise TimeoutError("the chaos load did not finish in time")
        return self.report

    def run(self) -> LoadReport:
        self._ensure_bucket()
        started = time.monotonic()
        deadline = started + self.spec.max_seconds
        ops = list(self.spec.mix)
        weights = [self.spec.mix[o] for o in ops]
        plan = [self._rng.choices(ops, weights)[0] for _ in range(self.spec.operations)]

        def one(op: str) -> None:
            try:
                if time.monotonic() < deadline:
                    self._operation(op)
            finally:
                with self._progress:
                    self._done += 1
                    self._progress.notify_all()

        with ThreadPoolExecutor(self.spec.concurrency, thread_name_prefix="load") as pool:
            list(pool.map(one, plan))
        self.report.seconds = time.monotonic() - started
        return self.report

    def _ensure_bucket(self) -> None:
        def create(client: Any) -> None:
            with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
                client.create_bucket(Bucket=self.spec.bucket)

        def ensure() -> bool:
            self._call(create, https=False)
            return True
        self._timed("create-bucket", ensure)

    def _operation(self, op: str) -> None:
        if op == "list":
            self._timed("list", self._list)
            return
        with self._rng_lock:
            key = self.book.take(self._rng, want_present=op == "get")
        if key is None:
            return
        try:
            if op == "put":
                self._timed("put", lambda: self._put(key))
            elif op == "get":
                self._timed("get", lambda: self._get(key))
            else:
                self._timed("delete", lambda: self._delete(key))
        finally:
            key.lock.release()

    def _timed(self, op: str, fn: Callable[[], bool]) -> None:
        start = time.monotonic()
        ok = fn()
        self.report.record(op, time.monotonic() - start, ok)

    # ---- gateways, like a load balancer with SDK clients behind it ----

    def _order(self) -> list[_Gateway]:
        with self._rng_lock:
            self._next_gateway += 1
            start = self._next_gateway % len(self.gateways)
        ring = self.gateways[start:] + self.gateways[:start]
        ready = [g for g in ring if g.health.acquire()]
        return ready + [g for g in ring if g not in ready]

    def _call(self, fn: Callable[[Any], Any], *, https: bool) -> Any:
        """`fn(client)` on one gateway, then the next if it could not be reached."""
        last: BaseException | None = None
        for i, gateway in enumerate(self._order()):
            if i:
                self.report.add(failovers=1)
            try:
                result = fn(gateway.https if https else gateway.http)
            except Exception as exc:
                if type(exc).__name__ not in _CONNECTION_ERRORS:
                    gateway.health.success()  # it answered, even if with an error
                    raise
                gateway.health.failure(type(exc).__name__)
                last = exc
                continue
            gateway.health.success()
            return result
        assert last is not None
        raise last

    # ---- operations ----

    def _size(self) -> int:
        spec, rng = self.spec, self._rng
        with self._rng_lock:
            roll = rng.random()
            if roll < spec.large_fraction and self.report.bytes_written < spec.max_bytes // 2:
                size = rng.randint(MIB, spec.max_size)
            elif roll < 0.15:
                size = rng.randint(64 * KIB, MIB)
            else:
                size = int(2 ** rng.uniform(10, 16))  # 1..64 KiB, log-uniform
        if self.report.bytes_written + size > spec.max_bytes:
            size = min(size, 4 * KIB)
        return min(size, spec.max_size)

    def _mode(self) -> str:
        modes = list(self.modes)
        with self._rng_lock:
            return self._rng.choices(modes, [self.modes[m] for m in modes])[0]

    def _put(self, key: KeyState) -> bool:
        size, mode = self._size(), self._mode()
        data = os.urandom(size)
        customer = os.urandom(32) if mode == "sse-c" else None
        state = Expected(hashlib.sha256(data).hexdigest(), size, mode, customer)
        args: dict[str, Any] = {"Bucket": self.spec.bucket, "Key": key.name, "Body": data}
        if mode == "sse-s3":
            args["ServerSideEncryption"] = "AES256"
        elif customer is not None:
            args.update(SSECustomerAlgorithm="AES256", SSECustomerKey=customer)
        try:
            self._call(lambda c: c.put_object(**args), https=customer is not None)
        except Exception as exc:
            key.unknown(state)
            self.report.fail(f"PUT {key.name} ({mode}, {size} B): {_describe(exc)}")
            return False
        key.acknowledge(state)
        self.report.add(bytes_written=size)
        return True

    def _delete(self, key: KeyState) -> bool:
        try:
            self._call(lambda c: c.delete_object(Bucket=self.spec.bucket, Key=key.name),
                       https=False)
        except Exception as exc:
            key.unknown(ABSENT)
            self.report.fail(f"DELETE {key.name}: {_describe(exc)}")
            return False
        key.acknowledge(ABSENT)
        return True

    def _get(self, key: KeyState, *, settle: bool = True) -> bool:
        """Reads `key` and checks it against every state it may be in: one read per way of
        reading (no SSE-C key, or each candidate's customer key), newest first."""
        errors = []
        tried: set[bytes | None] = set()
        for candidate in reversed(key.states):
            if candidate.customer_key in tried:
                continue
            tried.add(candidate.customer_key)
            same_way = [c for c in key.states if c.customer_key == candidate.customer_key]
            outcome, detail = self._read(key.name, candidate.customer_key, same_way)
            if isinstance(outcome, Expected):
                if settle:
                    key.settle(outcome)
                if outcome is not ABSENT:
                    self.report.add(objects_verified=1, bytes_verified=outcome.size)
                return True
            if outcome == "other-bytes":
                self.report.fail(f"GET {key.name}: {detail}", corrupt=True)
                return False
            errors.append(detail)
        lost = all("NoSuchKey" in e for e in errors) and ABSENT not in key.states
        self.report.fail(f"GET {key.name}: " + "; ".join(errors), lost=lost)
        return False

    def _read(self, name: str, customer_key: bytes | None,
              candidates: list[Expected]) -> tuple[Expected | str, str]:
        """Reads `name` (with `customer_key` for SSE-C): the candidate it matched, or
        ("other-bytes" | "error", detail)."""
        args: dict[str, Any] = {"Bucket": self.spec.bucket, "Key": name}
        if customer_key is not None:
            args.update(SSECustomerAlgorithm="AES256", SSECustomerKey=customer_key)

        def fetch(client: Any) -> tuple[str, int]:
            reply = client.get_object(**args)
            digest, size = hashlib.sha256(), 0
            for chunk in reply["Body"].iter_chunks(1 << 20):
                digest.update(chunk)
                size += len(chunk)
            return digest.hexdigest(), size

        how = "with its SSE-C key" if customer_key is not None else "without SSE-C key"
        try:
            digest, size = self._call(fetch, https=customer_key is not None)
        except Exception as exc:
            code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
            if code == "NoSuchKey" and ABSENT in candidates:
                return ABSENT, ""
            return "error", f"{how}: {_describe(exc)}"
        match = next((c for c in candidates if c.sha256 == digest), None)
        if match is not None:
            return match, ""
        expected = ", ".join(f"{c.size} B {c.mode}" for c in candidates if c is not ABSENT)
        return "other-bytes", (f"{how}: {size} bytes that match no acknowledged or attempted "
                               f"write (candidates: {expected or 'absent'})")

    def _list(self) -> bool:
        before = self.book.stable_view()

        def listing(client: Any) -> dict[str, int]:
            found: dict[str, int] = {}
            pages = client.get_paginator("list_objects_v2").paginate(
                Bucket=self.spec.bucket, Prefix=self.spec.prefix)
            for page in pages:
                found.update({o["Key"]: o["Size"] for o in page.get("Contents", [])})
            return found

        try:
            found = self._call(listing, https=False)
        except Exception as exc:
            self.report.fail(f"LIST: {_describe(exc)}")
            return False
        after = self.book.stable_view()
        wrong = []
        for name in found:
            if name not in self.book.by_name:
                wrong.append(f"{name} was never written")
        for key in self.book.keys:
            gen, busy = before[key.name]
            if busy or after[key.name] != (gen, False) or key.settled is None:
                continue  # changed or ambiguous while listing: nothing to expect
            if key.settled is ABSENT and key.name in found:
                wrong.append(f"{key.name} listed but deleted")
            elif key.settled is not ABSENT and key.name not in found:
                wrong.append(f"{key.name} missing from the listing")
            elif key.settled is not ABSENT and found[key.name] != key.settled.size:
                wrong.append(f"{key.name} listed with {found[key.name]} bytes, "
                             f"not {key.settled.size}")
        if wrong:
            self.report.fail("LIST: " + "; ".join(wrong[:5]))
            return False
        return True

    # ---- verification ----

    def verify_all(self, title: str = "verify") -> LoadReport:
        """Reads every key once (after the load has ended) and checks it; returns the counts
        of this pass alone."""
        main = self.report
        self.report = LoadReport()
        started = time.monotonic()
        try:
            def check(key: KeyState) -> None:
                with key.lock:
                    self._timed("get", lambda: self._get(key))
            with ThreadPoolExecutor(self.spec.concurrency, thread_name_prefix="verify") as pool:
                list(pool.map(check, self.book.keys))
            self.report.seconds = time.monotonic() - started
            self.report.extra["title"] = title
            return self.report
        finally:
            self.report, verified = main, self.report
            main.add(objects_verified=verified.objects_verified,
                     bytes_verified=verified.bytes_verified)


def _describe(exc: BaseException) -> str:
    response = getattr(exc, "response", None)
    if isinstance(response, dict) and "Error" in response:
        meta = response.get("ResponseMetadata", {})
        return (f"{meta.get('HTTPStatusCode', '?')} {response['Error'].get('Code', '')} "
                f"{response['Error'].get('Message', '')}".strip())
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


def endpoints_of(cluster: Any) -> list[GatewayEndpoint]:
    return [GatewayEndpoint(g.name, f"http://{g.address}", f"https://{g.extra['https']}")
            for g in cluster.by_role("gateway")]


def load_for(cluster: Any, spec: LoadSpec) -> ChaosLoad:
    """A load against every gateway of a launcher `Cluster`."""
    access, secret = cluster.credentials
    return ChaosLoad(endpoints_of(cluster), access, secret, str(cluster.ca_path), spec,
                     kms=bool(cluster.by_role("kes")))


def run_load(cluster: Any, spec: LoadSpec) -> LoadReport:
    """`python -m cluster load`: the load, then a verify pass over every key."""
    load = load_for(cluster, spec)
    report = load.run()
    verify = load.verify_all()
    report.extra["verify pass"] = (f"{verify.objects_verified} objects, "
                                   f"{verify.failure_count} failures")
    for message in verify.failures:
        report.fail(f"verify: {message}")
    return report
