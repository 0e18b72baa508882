"""The server's in-memory key cache in front of a keystore, with KES's three expiries.

- `any`: every entry is dropped after this long, so deletes on other servers take effect;
- `unused`: entries not used within this long are dropped (second-chance sweep every unused/2);
- `offline`: while the keystore is down, cached keys keep serving for this long; the two sweeps
  above are suspended meanwhile, so an outage inside the window fails no generate or decrypt.

The keystore's health is checked every `status_interval` seconds and right before any sweep
would drop entries (KES checks only periodically, which can drop keys early in an outage).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from .crypto import SecretKey
from .keyfile import KeyFormatError, decode_key
from .keystore import KeyStore, KeystoreError

__all__ = ["CacheExpiry", "KeyCache"]


@dataclass(frozen=True)
class CacheExpiry:
    """Seconds; 0 disables that expiry (offline 0 = no offline caching)."""

    any: float = 300.0
    unused: float = 30.0
    offline: float = 0.0


class _Entry:
    __slots__ = ("key", "used")

    def __init__(self, key: SecretKey):
        self.key = key
        self.used = True


class KeyCache:
    """Cached, parsed master keys by name; `get` is lock-free on a hit, single-flight on a miss."""

    def __init__(self, store: KeyStore, expiry: CacheExpiry = CacheExpiry(),
                 status_interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self.store = store
        self.expiry = expiry
        self.status_interval = status_interval
        self._clock = clock
        self._entries: dict[str, _Entry] = {}
        self._barriers: dict[str, threading.Lock] = {}
        self._barrier_lock = threading.Lock()
        self._offline_since: float | None = None
        self.latency = 0.0
        self.last_check = float("-inf")
        now = clock()
        self._due = {"any": now + expiry.any, "unused": now + expiry.unused / 2,
                     "status": now + status_interval}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- lookups ----

    def get(self, name: str) -> SecretKey:
        entry = self._entries.get(name)
        if entry is not None:
            entry.used = True
            return entry.key
        with self._barrier(name):
            entry = self._entries.get(name)
            if entry is not None:
                return entry.key
            try:
                key = decode_key(self.store.get(name))
            except KeyFormatError as exc:
                raise KeystoreError(f"key {name} is corrupt: {exc}") from exc
            self._entries[name] = _Entry(key)
            return key

    def _barrier(self, name: str) -> threading.Lock:
        with self._barrier_lock:
            lock = self._barriers.get(name)
            if lock is None:
                lock = self._barriers[name] = threading.Lock()
                if len(self._barriers) > 4096:  # forget idle barriers of long-gone names
                    self._barriers = {name: lock}
            return lock

    def forget(self, name: str) -> None:
        """Drop one key (after delete on this server)."""
        self._entries.pop(name, None)

    def __len__(self) -> int:
        return len(self._entries)

    # ---- keystore health ----

    @property
    def offline(self) -> bool:
        return self._offline_since is not None

    def check_status(self) -> bool:
        """Probe the keystore now; True when reachable. Updates `offline` and `latency`."""
        self.last_check = self._clock()
        try:
            self.latency = self.store.status()
        except KeystoreError:
            if self._offline_since is None:
                self._offline_since = self._clock()
            return False
        self._offline_since = None
        return True

    def _hold_for_outage(self) -> bool:
        """True when sweeps must keep entries: keystore down and offline caching on."""
        return self.expiry.offline > 0 and not self.check_status()

    # ---- expiry ----

    def tick(self) -> None:
        """Run every sweep that is due (called by the background thread; tests call it)."""
        now = self._clock()
        if now >= self._due["status"]:
            self._due["status"] = now + self.status_interval
            self.check_status()
        if self.expiry.any > 0 and now >= self._due["any"]:
            self._due["any"] = now + self.expiry.any
            if not self._hold_for_outage():
                self._entries.clear()
        if self.expiry.unused > 0 and now >= self._due["unused"]:
            self._due["unused"] = now + self.expiry.unused / 2
            if not self._hold_for_outage():
                self._sweep_unused()
        since = self._offline_since
        if since is not None and self.expiry.offline > 0 and now - since >= self.expiry.offline:
            self._entries.clear()

    def _sweep_unused(self) -> None:
        for name, entry in list(self._entries.items()):
            if entry.used:
                entry.used = False
            else:
                self._entries.pop(name, None)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="kes-cache", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            try:
                self.tick()
            except Exception:  # a sweep must never kill the thread
                time.sleep(1)

    def stop(self) -> None:
        self._stop.set()

