"""The KES pool as the encryption core's KMS: `kes.client.KESClient` behind `kms.KMS`, with
KES's answers mapped onto the object layer's KMS errors.

    404 key does not exist                  -> KMSKeyNotFound       (400 KMS.NotFoundException)
    403 not authorized                      -> KMSAccessDenied      (403 AccessDenied)
    400 decryption failed                   -> KMSInvalidCiphertext (400 KMS.InvalidCiphertext..)
    no endpoint answered (network, 5xx)     -> KMSUnavailable       (503 ServiceUnavailable)
    any other 4xx                           -> EncryptionError      (a request KES refused)

The messages name the key and what KES said, never key material.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gateway.crypto.kms import DataKey
from gateway.objects.errors import (
    EncryptionError,
    KMSAccessDenied,
    KMSInvalidCiphertext,
    KMSKeyNotFound,
    KMSUnavailable,
)
from kes.client import KESClient
from kes.errors import (
    APIError,
    DecryptError,
    KESUnavailable,
    KeyExists,
    KeyNotFound,
    NotAllowed,
    ServerError,
)

__all__ = ["KESKMS"]

log = logging.getLogger("tessera.gateway.kms")
T = TypeVar("T")


class KESKMS:
    """Implements kms.KMS over a KES client pool (which fails over between servers)."""

    def __init__(self, client: KESClient, default_key_id: str) -> None:
        self.client = client
        self._default = default_key_id

    @property
    def default_key_id(self) -> str:
        return self._default

    async def generate_key(self, key_id: str, context: bytes) -> DataKey:
        plaintext, ciphertext = await _mapped(
            key_id, "generate", lambda: self.client.generate_key(key_id, context))
        return DataKey(plaintext, ciphertext)

    async def decrypt(self, key_id: str, ciphertext: bytes, context: bytes) -> bytes:
        return await _mapped(key_id, "decrypt",
                             lambda: self.client.decrypt(key_id, ciphertext, context))

    async def key_exists(self, key_id: str) -> bool:
        try:
            await _mapped(key_id, "describe", lambda: self.client.describe_key(key_id))
        except KMSKeyNotFound:
            return False
        return True

    async def create_key(self, key_id: str) -> None:
        with contextlib.suppress(KeyExists):
            await _mapped(key_id, "create", lambda: self.client.create_key(key_id),
                          passthrough=(KeyExists,))

    async def ensure_default_key(self) -> None:
        """MinIO's start-up check: generate with the default key, create it if it is missing.
        Raises KMSUnavailable when no KES endpoint answered."""
        try:
            await self.client.ensure_default_key(self._default)
        except KESUnavailable as exc:
            raise KMSUnavailable(str(exc)) from exc
        except APIError as exc:
            raise EncryptionError(f"KES refused the default key {self._default!r}: "
                                  f"{exc.status} {exc.message}") from exc

    def reload_identity(self) -> None:
        """Re-read MINIO_KMS_KES_CERT_FILE/KEY_FILE/CAPATH (SIGHUP); raises and keeps the old
        identity when a file cannot be loaded."""
        self.client.reload_identity()

    async def aclose(self) -> None:
        await self.client.aclose()


async def _mapped(key_id: str, call: str, fn: Callable[[], Awaitable[T]], *,
                  passthrough: tuple[type[Exception], ...] = ()) -> T:
    try:
        return await fn()
    except passthrough:
        raise
    except KeyNotFound as exc:
        raise KMSKeyNotFound(f"The KMS key {key_id!r} does not exist.") from exc
    except NotAllowed as exc:
        raise KMSAccessDenied(f"KES does not allow the gateway to {call} with key "
                              f"{key_id!r}.") from exc
    except DecryptError as exc:
        raise KMSInvalidCiphertext(f"KES could not decrypt a data key of {key_id!r}: "
                                   "ciphertext or context not authentic.") from exc
    except KESUnavailable as exc:
        log.warning("KMS %s with key %r: %s", call, key_id, exc)
        raise KMSUnavailable(str(exc)) from exc
    except ServerError as exc:  # the client already tried every endpoint
        log.warning("KMS %s with key %r: %s", call, key_id, exc)
        raise KMSUnavailable(f"KES answered {exc.status} {exc.message}") from exc
    except APIError as exc:
        raise EncryptionError(f"KES refused to {call} with key {key_id!r}: "
                              f"{exc.status} {exc.message}") from exc
