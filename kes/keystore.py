"""Where master keys live: the KeyStore protocol, an in-memory store and the directory store.

A keystore holds opaque encoded keys (see keyfile.py) by name. It raises KeyExists / KeyNotFound
for those two cases and KeystoreError for anything else (which the API answers with 502).

The directory store keeps one file per key, named exactly after the key, as KES's `fs` keystore
does, so several servers (ours or real KES) can share one directory. A new key is written to a
dot-named temporary file, fsynced, then hard-linked to its name: link() fails if the name exists,
so two servers racing to create one key yield exactly one key, and a reader never sees a
partially written file.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Protocol

from .errors import KeyExists, KeyNotFound

__all__ = ["FsKeyStore", "KeyStore", "KeystoreError", "KeystoreUnreachable", "MemKeyStore",
           "page_names"]

MAX_KEY_FILE = 1 << 20
PAGE_SIZE = 1024


class KeystoreError(Exception):
    """The keystore failed for a reason other than key exists / not found (answered 502)."""


class KeystoreUnreachable(KeystoreError):
    """The keystore did not answer at all (network or directory gone)."""


class KeyStore(Protocol):
    """KES's keystore interface: five methods and close."""

    def status(self) -> float:
        """Latency of a liveness check in seconds; KeystoreUnreachable when down."""
        ...

    def create(self, name: str, value: bytes) -> None: ...

    def get(self, name: str) -> bytes: ...

    def delete(self, name: str) -> None: ...

    def list(self, prefix: str, n: int = PAGE_SIZE) -> tuple[list[str], str]:
        """Up to `n` sorted names starting with `prefix` and the first name not returned."""
        ...

    def close(self) -> None: ...


def page_names(names: list[str], prefix: str, n: int) -> tuple[list[str], str]:
    """Sort, filter by prefix and cut at `n` names; the second value is where to continue."""
    matching = sorted(name for name in names if name.startswith(prefix))
    if n <= 0 or len(matching) <= n:
        return matching, ""
    return matching[:n], matching[n]


class MemKeyStore:
    """Keys in a dict: KES's store when no keystore is configured, and for unit tests."""

    def __init__(self) -> None:
        self._keys: dict[str, bytes] = {}
        self._lock = threading.Lock()
        self.offline = False  # unit tests flip this to simulate an outage

    def _check(self) -> None:
        if self.offline:
            raise KeystoreUnreachable("memory keystore is offline")

    def status(self) -> float:
        self._check()
        return 0.0

    def create(self, name: str, value: bytes) -> None:
        self._check()
        with self._lock:
            if name in self._keys:
                raise KeyExists
            self._keys[name] = value

    def get(self, name: str) -> bytes:
        self._check()
        try:
            return self._keys[name]
        except KeyError:
            raise KeyNotFound from None

    def delete(self, name: str) -> None:
        self._check()
        with self._lock:
            if self._keys.pop(name, None) is None:
                raise KeyNotFound

    def list(self, prefix: str, n: int = PAGE_SIZE) -> tuple[list[str], str]:
        self._check()
        return page_names(list(self._keys), prefix, n)

    def close(self) -> None:
        pass


def _is_key_file(name: str) -> bool:
    return not name.startswith(".") and "." not in name


class FsKeyStore:
    """One file per key in a directory (KES `keystore.fs.path`), shareable between servers."""

    def __init__(self, path: Path | str):
        self.path = Path(path)
        try:
            self.path.mkdir(mode=0o755, parents=True, exist_ok=True)
        except OSError as exc:
            raise KeystoreError(f"cannot create keystore directory {self.path}: {exc}") from exc

    def __str__(self) -> str:
        return f"fs:{self.path}"

    def _file(self, name: str) -> Path:
        if not name or "/" in name or "\\" in name or "." in name:
            raise KeystoreError(f"invalid key name {name!r}")
        return self.path / name

    def status(self) -> float:
        start = time.monotonic()
        try:
            if not self.path.is_dir():
                raise KeystoreUnreachable(f"keystore directory {self.path} is missing")
        except OSError as exc:
            raise KeystoreUnreachable(str(exc)) from exc
        return time.monotonic() - start

    def create(self, name: str, value: bytes) -> None:
        final = self._file(name)
        tmp = self.path / f".{name}.tmp-{secrets.token_hex(8)}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            try:
                os.write(fd, value)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(tmp, final)  # atomic: fails if another server created it first
        except FileExistsError:
            raise KeyExists from None
        except OSError as exc:
            raise KeystoreError(f"failed to create key {name}: {exc}") from exc
        finally:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        self._sync_dir()

    def _sync_dir(self) -> None:
        with contextlib.suppress(OSError):
            fd = os.open(self.path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

    def get(self, name: str) -> bytes:
        try:
            with open(self._file(name), "rb") as f:
                return f.read(MAX_KEY_FILE)
        except FileNotFoundError:
            if not self.path.is_dir():
                raise KeystoreUnreachable(f"keystore directory {self.path} is missing") from None
            raise KeyNotFound from None
        except OSError as exc:
            raise KeystoreError(f"failed to read key {name}: {exc}") from exc

    def delete(self, name: str) -> None:
        try:
            os.unlink(self._file(name))
        except FileNotFoundError:
            raise KeyNotFound from None
        except OSError as exc:
            raise KeystoreError(f"failed to delete key {name}: {exc}") from exc
        self._sync_dir()

    def list(self, prefix: str, n: int = PAGE_SIZE) -> tuple[list[str], str]:
        try:
            names = [e for e in os.listdir(self.path) if _is_key_file(e)]
        except OSError as exc:
            raise KeystoreUnreachable(f"failed to list keys: {exc}") from exc
        return page_names(names, prefix, n)

    def close(self) -> None:
        pass
