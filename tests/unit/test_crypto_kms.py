"""KMS seam: canonical context bytes (MinIO's), the in-memory KMS, the data-key cache."""

from __future__ import annotations

import asyncio

import pytest

from gateway.crypto.cache import CachingKMS, DataKeyCacheConfig
from gateway.crypto.kms import (
    DataKey,
    MemoryKMS,
    canonical_context,
    kms_context,
    minio_path_join,
    valid_key_name,
)
from gateway.objects.errors import KMSInvalidCiphertext, KMSKeyNotFound, KMSUnavailable


def run(coro):
    return asyncio.run(coro)


# --- canonical context -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("context", "expected"),
    [
        ({}, b"{}"),
        ({"photos": "photos/2024/a.jpg"}, b'{"photos":"photos/2024/a.jpg"}'),
        ({"k2": "v2", "k1": "v1"}, b'{"k1":"v1","k2":"v2"}'),
        ({"healthcheck": ""}, b'{"healthcheck":""}'),
        ({".minio.sys": ".minio.sys/config/iam"}, b'{".minio.sys":".minio.sys/config/iam"}'),
        ({"MinIO admin API": "KMSKeyStatusHandler"},
         b'{"MinIO admin API":"KMSKeyStatusHandler"}'),
        ({"a": "<b>&</b>"}, b'{"a":"\\u003cb\\u003e\\u0026\\u003c/b\\u003e"}'),
        ({"q": 'say "hi" \\ bye'}, b'{"q":"say \\"hi\\" \\\\ bye"}'),
        ({"c": "\n\r\t\b\f\x01\x1f\x7f"}, b'{"c":"\\n\\r\\t\\u0008\\u000c\\u0001\\u001f\x7f"}'),
        ({"u": "caf\u00e9 \u2028\u2029"}, '{"u":"café \\u2028\\u2029"}'.encode()),
        ({"bad": "\ud800x"}, b'{"bad":"\\ufffdx"}'),
        # bytewise order of the raw keys: upper case before lower, multi-byte last
        ({"a": "1", "B": "2", "\u00e9": "3", "_": "4"},
         '{"B":"2","_":"4","a":"1","é":"3"}'.encode()),
    ],
)
def test_canonical_context_matches_minio(context, expected):
    assert canonical_context(context) == expected


def test_sse_s3_context_is_bucket_to_joined_path():
    assert kms_context("photos", "2024/a.jpg") == b'{"photos":"photos/2024/a.jpg"}'
    assert kms_context("b", "a//c/./d/") == b'{"b":"b/a/c/d"}'  # Go's path.Join cleans


def test_sse_kms_context_adds_the_bucket_entry_unless_the_client_set_it():
    assert kms_context("b", "k", client_context={"team": "x"}) == b'{"b":"b/k","team":"x"}'
    assert kms_context("b", "k", client_context={"b": "mine"}) == b'{"b":"mine"}'


def test_bucket_scope_context_does_not_name_the_object():
    assert kms_context("b", "k", scope="bucket") == b'{"b":"b"}'
    assert kms_context("b", "k1", scope="bucket") == kms_context("b", "k2", scope="bucket")


def test_minio_path_join():
    assert minio_path_join("b", "x/../y") == "b/y"
    assert minio_path_join("b", "") == "b"


@pytest.mark.parametrize(
    ("name", "ok"),
    [("my-key", True), ("k_1", True), ("a" * 80, True), ("a" * 81, False), ("", False),
     ("-a", False), ("a-", False), ("_", False), ("a/b", False), ("a b", False),
     ("../x", False)],
)
def test_key_name_rule(name, ok):
    assert valid_key_name(name) is ok


# --- in-memory KMS -----------------------------------------------------------------------

def test_memory_kms_generate_and_decrypt():
    kms = MemoryKMS(keys=["other"])
    ctx = b'{"b":"b/k"}'
    dk = run(kms.generate_key("tessera-default", ctx))
    assert len(dk.plaintext) == 32 and len(dk.ciphertext) == 32 + 16 + 28  # KES layout
    assert dk.plaintext not in dk.ciphertext and "plaintext" not in repr(dk)
    assert run(kms.decrypt("tessera-default", dk.ciphertext, ctx)) == dk.plaintext
    with pytest.raises(KMSInvalidCiphertext):
        run(kms.decrypt("tessera-default", dk.ciphertext, b'{"b":"b/other"}'))
    with pytest.raises(KMSInvalidCiphertext):
        run(kms.decrypt("other", dk.ciphertext, ctx))
    with pytest.raises(KMSKeyNotFound):
        run(kms.generate_key("nope", ctx))
    assert run(kms.key_exists("other")) and not run(kms.key_exists("nope"))
    run(kms.create_key("nope"))
    assert run(kms.key_exists("nope"))
    kms.available = False
    with pytest.raises(KMSUnavailable):
        run(kms.generate_key("tessera-default", ctx))


# --- data-key cache ----------------------------------------------------------------------

class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SlowKMS(MemoryKMS):
    """Answers after yielding to the loop, so concurrent callers overlap."""

    async def generate_key(self, key_id: str, context: bytes) -> DataKey:
        await asyncio.sleep(0.01)
        return await super().generate_key(key_id, context)

    async def decrypt(self, key_id: str, ciphertext: bytes, context: bytes) -> bytes:
        await asyncio.sleep(0.01)
        return await super().decrypt(key_id, ciphertext, context)


def test_generate_is_reused_within_age_and_object_bounds():
    inner, clock = MemoryKMS(), Clock()
    config = DataKeyCacheConfig(generate=True, max_age=60, max_objects=10)
    kms = CachingKMS(inner, config, clock=clock)

    async def go():
        keys = [await kms.generate_key("tessera-default", b'{"b":"b"}') for _ in range(25)]
        assert len({k.ciphertext for k in keys}) == 3  # 10 + 10 + 5
        assert inner.calls["generate"] == 3
        clock.now += 61
        await kms.generate_key("tessera-default", b'{"b":"b"}')
        assert inner.calls["generate"] == 4  # aged out
        await kms.generate_key("tessera-default", b'{"c":"c"}')
        assert inner.calls["generate"] == 5  # another context is another key

    run(go())
    stats = kms.statistics()
    assert stats.generate_hits == 22 and stats.generate_misses == 5  # 27 calls


def test_a_generated_key_is_already_cached_for_decrypt():
    inner = MemoryKMS()
    kms = CachingKMS(inner)

    async def go():
        dk = await kms.generate_key("tessera-default", b"{}")
        assert await kms.decrypt("tessera-default", dk.ciphertext, b"{}") == dk.plaintext
        assert inner.calls["decrypt"] == 0

    run(go())


def test_decrypt_cache_serves_repeats_and_expires():
    inner, clock = MemoryKMS(), Clock()
    dk = run(inner.generate_key("tessera-default", b"{}"))
    kms = CachingKMS(inner, DataKeyCacheConfig(decrypt_max_age=300), clock=clock)

    async def go():
        for _ in range(5):
            assert await kms.decrypt("tessera-default", dk.ciphertext, b"{}") == dk.plaintext
        assert inner.calls["decrypt"] == 1
        clock.now += 301
        await kms.decrypt("tessera-default", dk.ciphertext, b"{}")
        assert inner.calls["decrypt"] == 2
        with pytest.raises(KMSInvalidCiphertext):  # the context is part of the cache key
            await kms.decrypt("tessera-default", dk.ciphertext, b'{"x":"y"}')

    run(go())


def test_cached_reads_survive_a_kms_outage_and_errors_are_not_cached():
    inner = MemoryKMS()
    kms = CachingKMS(inner)
    dk1 = run(inner.generate_key("tessera-default", b"{}"))
    dk2 = run(inner.generate_key("tessera-default", b"{}"))

    async def go():
        await kms.decrypt("tessera-default", dk1.ciphertext, b"{}")
        inner.available = False
        assert await kms.decrypt("tessera-default", dk1.ciphertext, b"{}") == dk1.plaintext
        with pytest.raises(KMSUnavailable):
            await kms.decrypt("tessera-default", dk2.ciphertext, b"{}")
        inner.available = True
        assert await kms.decrypt("tessera-default", dk2.ciphertext, b"{}") == dk2.plaintext

    run(go())


def test_concurrent_misses_share_one_kms_call():
    inner = SlowKMS()
    kms = CachingKMS(inner, DataKeyCacheConfig(generate=True))
    dk = run(inner.generate_key("tessera-default", b"{}"))
    inner.calls.clear()

    async def go():
        got = await asyncio.gather(
            *[kms.decrypt("tessera-default", dk.ciphertext, b"{}") for _ in range(20)],
            *[kms.generate_key("tessera-default", b'{"b":"b"}') for _ in range(20)],
        )
        assert all(g == dk.plaintext for g in got[:20])
        assert len({g.ciphertext for g in got[20:]}) == 1

    run(go())
    assert inner.calls["decrypt"] == 1 and inner.calls["generate"] == 1


def test_concurrent_generates_respect_the_object_budget():
    inner = SlowKMS()
    kms = CachingKMS(inner, DataKeyCacheConfig(generate=True, max_objects=2))

    async def go():
        return await asyncio.gather(
            *[kms.generate_key("tessera-default", b"{}") for _ in range(6)]
        )

    keys = run(go())
    assert max(sum(k.ciphertext == c.ciphertext for k in keys) for c in keys) <= 2
    assert inner.calls["generate"] >= 3


def test_cache_is_bounded_and_can_be_cleared():
    inner = MemoryKMS()
    kms = CachingKMS(inner, DataKeyCacheConfig(generate=True, max_entries=3))

    async def go():
        for i in range(10):
            await kms.generate_key("tessera-default", f'{{"b{i}":"x"}}'.encode())

    run(go())
    stats = kms.statistics()
    assert stats.generate_entries == 3 and stats.decrypt_entries == 3
    kms.clear()
    assert kms.statistics().generate_entries == 0


def test_disabled_cache_passes_every_call_through():
    inner = MemoryKMS()
    kms = CachingKMS(inner, DataKeyCacheConfig(generate=False, decrypt=False))

    async def go():
        a = await kms.generate_key("tessera-default", b"{}")
        b = await kms.generate_key("tessera-default", b"{}")
        assert a.ciphertext != b.ciphertext
        await kms.decrypt("tessera-default", a.ciphertext, b"{}")
        await kms.decrypt("tessera-default", a.ciphertext, b"{}")

    run(go())
    assert inner.calls["generate"] == 2 and inner.calls["decrypt"] == 2


def test_cache_config_from_env():
    default = DataKeyCacheConfig.from_env({})
    assert default == DataKeyCacheConfig()
    assert (default.generate, default.scope, default.decrypt) == (False, "object", True)
    cfg = DataKeyCacheConfig.from_env(
        {"TESSERA_KMS_DATA_KEY_CACHE": "bucket", "TESSERA_KMS_CACHE_MAX_AGE": "5",
         "TESSERA_KMS_CACHE_MAX_OBJECTS": "7", "TESSERA_KMS_DECRYPT_CACHE": "off",
         "TESSERA_KMS_CACHE_DECRYPT_MAX_AGE": "9", "TESSERA_KMS_CACHE_MAX_ENTRIES": "11"}
    )
    assert (cfg.generate, cfg.scope, cfg.max_age, cfg.max_objects) == (True, "bucket", 5.0, 7)
    assert (cfg.decrypt, cfg.decrypt_max_age, cfg.max_entries) == (False, 9.0, 11)
    assert "bucket-scope" in cfg.describe() and "per object" in default.describe()
    for bad in ({"TESSERA_KMS_DATA_KEY_CACHE": "on"}, {"TESSERA_KMS_CACHE_MAX_AGE": "0"},
                {"TESSERA_KMS_CACHE_MAX_OBJECTS": "x"}, {"TESSERA_KMS_DECRYPT_CACHE": "2"},
                {"TESSERA_KMS_CACHE_MAX_ENTRIES": "-1"}):
        with pytest.raises(ValueError, match="TESSERA_KMS_"):
            DataKeyCacheConfig.from_env(bad)


def test_default_cache_generates_per_object_and_remembers_for_reads():
    inner = MemoryKMS()
    kms = CachingKMS(inner)

    async def go():
        a = await kms.generate_key("tessera-default", b'{"b":"b/k"}')
        b = await kms.generate_key("tessera-default", b'{"b":"b/k"}')
        assert a.ciphertext != b.ciphertext  # no sharing without the opt-in
        assert await kms.decrypt("tessera-default", a.ciphertext, b'{"b":"b/k"}') == a.plaintext

    run(go())
    assert (inner.calls["generate"], inner.calls["decrypt"]) == (2, 0)
