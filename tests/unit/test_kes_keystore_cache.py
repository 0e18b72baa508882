"""Directory keystore semantics and the key cache's expiries (fake clock, in-memory store)."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from kes.cache import CacheExpiry, KeyCache
from kes.crypto import new_key
from kes.errors import KeyExists, KeyNotFound
from kes.keyfile import decode_key, encode_key
from kes.keystore import FsKeyStore, KeystoreError, MemKeyStore


def test_fs_create_race_yields_exactly_one_key(tmp_path) -> None:
    stores = [FsKeyStore(tmp_path), FsKeyStore(tmp_path)]  # two "servers", one directory
    outcomes: list[str] = []
    barrier = threading.Barrier(8)

    def create(i: int) -> None:
        barrier.wait()
        try:
            stores[i % 2].create("raced", encode_key(new_key(str(i))))
            outcomes.append("created")
        except KeyExists:
            outcomes.append("exists")

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert sorted(outcomes) == ["created"] + ["exists"] * 7
    assert [p.name for p in tmp_path.iterdir()] == ["raced"]  # no temporary file left
    decode_key(stores[1].get("raced"))


def test_fs_store_errors_listing_and_legacy_file(tmp_path) -> None:
    store = FsKeyStore(tmp_path / "keys")
    with pytest.raises(KeyNotFound):
        store.get("missing")
    with pytest.raises(KeyNotFound):
        store.delete("missing")
    for name in ("b-key", "a-key", "c"):
        store.create(name, encode_key(new_key("x")))
    (tmp_path / "keys" / ".b-key.tmp-123").write_text("in flight")
    assert store.list("") == (["a-key", "b-key", "c"], "")
    assert store.list("b") == (["b-key"], "")
    assert store.list("", 2) == (["a-key", "b-key"], "c")
    legacy = {"bytes": base64.b64encode(b"\x02" * 32).decode(), "algorithm": "AES256-GCM_SHA256",
              "created_at": "2022-01-01T00:00:00Z", "created_by": ""}
    (tmp_path / "keys" / "old").write_text(json.dumps(legacy))
    assert decode_key(store.get("old")).key == b"\x02" * 32
    (tmp_path / "keys").rename(tmp_path / "gone")
    with pytest.raises(KeystoreError):
        store.status()
    with pytest.raises(KeystoreError):
        store.get("a-key")


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _cache(expiry: CacheExpiry) -> tuple[MemKeyStore, KeyCache, _Clock]:
    store, clock = MemKeyStore(), _Clock()
    store.create("k", encode_key(new_key("x")))
    return store, KeyCache(store, expiry, status_interval=10, clock=clock), clock


def test_any_expiry_drops_keys_so_deletes_elsewhere_take_effect() -> None:
    store, cache, clock = _cache(CacheExpiry(any=60, unused=0, offline=0))
    cache.get("k")
    store.delete("k")  # another server deleted it
    clock.now += 30
    cache.tick()
    assert cache.get("k")  # still cached
    clock.now += 31
    cache.tick()
    with pytest.raises(KeyNotFound):
        cache.get("k")


def test_unused_expiry_is_second_chance() -> None:
    _, cache, clock = _cache(CacheExpiry(any=0, unused=20, offline=0))
    cache.get("k")
    clock.now += 10
    cache.tick()  # used since last sweep: flag cleared, kept
    assert len(cache) == 1
    clock.now += 10
    cache.tick()  # unused for a whole period: dropped
    assert len(cache) == 0


def test_offline_window_keeps_serving_then_expires() -> None:
    store, cache, clock = _cache(CacheExpiry(any=30, unused=20, offline=120))
    key = cache.get("k")
    store.offline = True
    for _ in range(10):  # 100 s of outage: every sweep is suspended
        clock.now += 10
        cache.tick()
        assert cache.get("k") == key
    assert cache.offline
    with pytest.raises(KeystoreError):
        cache.get("not-cached")
    clock.now += 40
    cache.tick()  # offline since the first failed check (t=10) for more than 120 s
    with pytest.raises(KeystoreError):
        cache.get("k")
    store.offline = False
    clock.now += 10
    cache.tick()
    assert cache.get("k") == key and not cache.offline


def test_without_offline_caching_outage_sweeps_normally() -> None:
    store, cache, clock = _cache(CacheExpiry(any=30, unused=0, offline=0))
    cache.get("k")
    store.offline = True
    clock.now += 31
    cache.tick()
    with pytest.raises(KeystoreError):
        cache.get("k")
