"""A bounded data-key cache in front of a KMS, so a KES round trip does not dominate small
SSE requests (MinIO measured one extra round trip per PUT costing ~50% of throughput).

Two halves, both bounded by age and by entry count (LRU):
- generate (opt-in, off by default): a data key for (key id, context) is handed out for at
  most `max_age` seconds and `max_objects` objects, like the AWS Encryption SDK's caching
  manager. It only helps when contexts repeat, i.e. with the "bucket" context scope
  (kms.kms_context); by default every object gets its own KES generate (MinIO's binding).
- decrypt (on by default): (key id, ciphertext, context) -> plaintext, so repeated GETs
  (and listings that unseal ETags) skip KES, and reads go on through a short KES outage.
Concurrent misses for the same entry share one KMS call. The trade-off is written down in
docs/design/encryption.md.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from gateway.crypto.kms import KMS, ContextScope, DataKey

__all__ = ["CacheStatistics", "CachingKMS", "DataKeyCacheConfig"]

T = TypeVar("T")
N = TypeVar("N", int, float)

ENV_DATA_KEY_CACHE = "TESSERA_KMS_DATA_KEY_CACHE"
ENV_MAX_AGE = "TESSERA_KMS_CACHE_MAX_AGE"
ENV_MAX_OBJECTS = "TESSERA_KMS_CACHE_MAX_OBJECTS"
ENV_DECRYPT_CACHE = "TESSERA_KMS_DECRYPT_CACHE"
ENV_DECRYPT_MAX_AGE = "TESSERA_KMS_CACHE_DECRYPT_MAX_AGE"
ENV_MAX_ENTRIES = "TESSERA_KMS_CACHE_MAX_ENTRIES"


@dataclass(frozen=True)
class DataKeyCacheConfig:
    """What the data-key cache may keep, and for how long (every bound > 0).

    generate: share one generated data key among new objects of a bucket (opt-in:
        TESSERA_KMS_DATA_KEY_CACHE=bucket, which also selects the "bucket" KES context
        scope). Off (the default) = MinIO's binding: one KES generate per object, with the
        object named in its context.
    decrypt: remember unsealed data keys for reads (TESSERA_KMS_DECRYPT_CACHE, default on).
    """

    generate: bool = False
    max_age: float = 60.0  # s a generated data key is used for new objects
    max_objects: int = 4096  # objects sealed under one generated data key
    decrypt: bool = True
    decrypt_max_age: float = 60.0  # s an unsealed data key is remembered
    max_entries: int = 10_000  # per half; least recently used entries go first

    @property
    def scope(self) -> ContextScope:
        """The KES context scope new objects get under this configuration."""
        return "bucket" if self.generate else "object"

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> DataKeyCacheConfig:
        """Reads the TESSERA_KMS_* cache variables; raises ValueError (one line) on a bad one."""
        generate = _choice(environ, ENV_DATA_KEY_CACHE, "off", ("off", "bucket"))
        decrypt = _choice(environ, ENV_DECRYPT_CACHE, "on", ("on", "off"))
        config = cls(
            generate=generate == "bucket",
            max_age=_number(environ, ENV_MAX_AGE, cls.max_age, float),
            max_objects=_number(environ, ENV_MAX_OBJECTS, cls.max_objects, int),
            decrypt=decrypt == "on",
            decrypt_max_age=_number(environ, ENV_DECRYPT_MAX_AGE, cls.decrypt_max_age, float),
            max_entries=_number(environ, ENV_MAX_ENTRIES, cls.max_entries, int),
        )
        return config

    def describe(self) -> str:
        """One line for the start-up log."""
        generate = (f"bucket-scope data keys (<= {self.max_age:g}s, <= {self.max_objects} "
                    "objects each)" if self.generate else "one data key per object")
        decrypt = (f"unsealed keys kept <= {self.decrypt_max_age:g}s" if self.decrypt
                   else "no read cache")
        return f"{generate}; {decrypt}; <= {self.max_entries} entries per cache"


def _choice(environ: Mapping[str, str], name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = environ.get(name, default).strip().lower() or default
    if value not in allowed:
        raise ValueError(f"{name} must be {' or '.join(allowed)}, not {value!r}")
    return value


def _number(environ: Mapping[str, str], name: str, default: N, kind: type[N]) -> N:
    text = environ.get(name)
    if text is None or not text.strip():
        return default
    try:
        value = kind(text)
    except ValueError:
        raise ValueError(f"{name} must be a number, not {text!r}") from None
    if value <= 0:
        raise ValueError(f"{name} must be positive, not {text!r}")
    return value


@dataclass(frozen=True)
class CacheStatistics:
    generate_hits: int
    generate_misses: int
    decrypt_hits: int
    decrypt_misses: int
    generate_entries: int
    decrypt_entries: int


class _Entry:
    __slots__ = ("created", "uses", "value")

    def __init__(self, value: object, created: float) -> None:
        self.value = value
        self.created = created
        self.uses = 0


class _Bounded:
    """An LRU table of _Entry with single-flight loading."""

    def __init__(self, max_entries: int) -> None:
        self._entries: OrderedDict[Hashable, _Entry] = OrderedDict()
        self._loading: dict[Hashable, asyncio.Future[object]] = {}
        self._max_entries = max_entries

    def get(self, key: Hashable) -> _Entry | None:
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, key: Hashable, entry: _Entry) -> None:
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    def drop(self, key: Hashable) -> None:
        self._entries.pop(key, None)

    def clear(self) -> None:
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    async def load_once(self, key: Hashable, load: Callable[[], Awaitable[T]]) -> T:
        """Runs `load` once for all concurrent callers asking for `key`."""
        future = self._loading.get(key)
        if future is None:
            future = asyncio.ensure_future(load())
            self._loading[key] = future
            future.add_done_callback(lambda f: self._loaded(key, f))
        return await asyncio.shield(future)  # one caller's cancellation spares the others

    def _loaded(self, key: Hashable, future: asyncio.Future[object]) -> None:
        self._loading.pop(key, None)
        if not future.cancelled():
            future.exception()  # mark it retrieved even if every waiter was cancelled


class CachingKMS:
    """A KMS that remembers data keys within `config`'s bounds. Implements kms.KMS.

    Use the wrapped KMS directly for health probes: they must reach KES.
    """

    def __init__(
        self,
        kms: KMS,
        config: DataKeyCacheConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.kms = kms
        self.config = config or DataKeyCacheConfig()
        self._clock = clock
        self._generated = _Bounded(self.config.max_entries)
        self._decrypted = _Bounded(self.config.max_entries)
        self._stats = dict.fromkeys(
            ("generate_hits", "generate_misses", "decrypt_hits", "decrypt_misses"), 0
        )

    @property
    def default_key_id(self) -> str:
        return self.kms.default_key_id

    async def generate_key(self, key_id: str, context: bytes) -> DataKey:
        if not self.config.generate:
            data_key = DataKey(*await self.kms.generate_key(key_id, context))
            if self.config.decrypt:  # a PUT is often read back soon
                self._remember_decrypted((key_id, data_key.ciphertext, context), data_key)
            return data_key
        cache_key = (key_id, context)
        entry = self._generated.get(cache_key)
        if entry is not None and self._usable(entry):
            entry.uses += 1
            self._stats["generate_hits"] += 1
            return entry.value  # type: ignore[return-value]
        while True:
            self._stats["generate_misses"] += 1
            data_key = await self._generated.load_once(
                cache_key, lambda: self._generate(cache_key)
            )
            entry = self._generated.get(cache_key)
            if entry is None or entry.value is not data_key:
                return data_key  # evicted or replaced meanwhile: the key itself is fresh
            if self._usable(entry):
                entry.uses += 1
                return data_key
            # Concurrent callers used up this key's object budget: generate another.

    async def _generate(self, cache_key: tuple[str, bytes]) -> DataKey:
        data_key = DataKey(*await self.kms.generate_key(*cache_key))
        self._generated.put(cache_key, _Entry(data_key, self._clock()))
        if self.config.decrypt:  # for reads of the objects about to be sealed under it
            self._remember_decrypted((cache_key[0], data_key.ciphertext, cache_key[1]), data_key)
        return data_key

    def _usable(self, entry: _Entry) -> bool:
        fresh = self._clock() - entry.created < self.config.max_age
        return fresh and entry.uses < self.config.max_objects

    async def decrypt(self, key_id: str, ciphertext: bytes, context: bytes) -> bytes:
        if not self.config.decrypt:
            return await self.kms.decrypt(key_id, ciphertext, context)
        cache_key = (key_id, ciphertext, context)
        entry = self._decrypted.get(cache_key)
        if entry is not None and self._clock() - entry.created < self.config.decrypt_max_age:
            self._stats["decrypt_hits"] += 1
            return entry.value  # type: ignore[return-value]
        self._stats["decrypt_misses"] += 1
        return await self._decrypted.load_once(cache_key, lambda: self._decrypt(cache_key))

    async def _decrypt(self, cache_key: tuple[str, bytes, bytes]) -> bytes:
        plaintext = await self.kms.decrypt(*cache_key)
        self._remember_decrypted(cache_key, plaintext)
        return plaintext

    def _remember_decrypted(self, cache_key: tuple[str, bytes, bytes], value: object) -> None:
        plaintext = value.plaintext if isinstance(value, DataKey) else value
        self._decrypted.put(cache_key, _Entry(plaintext, self._clock()))

    async def key_exists(self, key_id: str) -> bool:
        return await self.kms.key_exists(key_id)

    async def create_key(self, key_id: str) -> None:
        await self.kms.create_key(key_id)

    def clear(self) -> None:
        """Forgets every data key (e.g. after a KES key was revoked)."""
        self._generated.clear()
        self._decrypted.clear()

    def statistics(self) -> CacheStatistics:
        return CacheStatistics(
            **self._stats,
            generate_entries=len(self._generated),
            decrypt_entries=len(self._decrypted),
        )
