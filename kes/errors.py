"""The KES error model: one exception tree shared by the server (answers) and client (matches).

Go clients (kms-go, hence MinIO) compare errors by status code *and* exact message text, so every
standard error is a class carrying both, and `error_from_reply` maps a reply back onto the same
classes (including the two legacy aliases kms-go rewrites).

    KESError                      base of everything raised by kes/
    ├── APIError                  a KES server answered with status >= 400 (status, message)
    │   ├── NotAllowed            403 not authorized: insufficient permissions   (final)
    │   ├── KeyNotFound           404 key does not exist                         (final)
    │   ├── KeyExists             400 key already exists                         (final)
    │   ├── DecryptError          400 decryption failed: ciphertext is not authentic (final)
    │   ├── PolicyNotFound        404 policy does not exist                      (final)
    │   ├── IdentityNotFound      404 identity does not exist                    (final)
    │   └── ServerError           any 5xx (keystore failure, ...): another server may succeed
    └── KESUnavailable            no endpoint of the pool answered (client side; retry later)
"""

from __future__ import annotations

__all__ = [
    "APIError",
    "DecryptError",
    "IdentityNotFound",
    "KESError",
    "KESUnavailable",
    "KeyExists",
    "KeyNotFound",
    "NotAllowed",
    "PolicyNotFound",
    "ServerError",
    "error_from_reply",
]


class KESError(Exception):
    """Base of every error raised by the kes package."""


class APIError(KESError):
    """A KES answer with status >= 400. Subclasses fix the status and the exact message."""

    status: int = 500
    message: str = "internal error"

    def __init__(self, message: str | None = None, status: int | None = None):
        if message is not None:
            self.message = message
        if status is not None:
            self.status = status
        super().__init__(f"kes: {self.status} {self.message}")

    def __eq__(self, other: object) -> bool:
        # errors.Is in Go: equal status and equal text, whatever the Python class
        return (isinstance(other, APIError) and other.status == self.status
                and other.message == self.message)

    def __hash__(self) -> int:
        return hash((self.status, self.message))


class NotAllowed(APIError):
    """The identity is unknown or its policy does not allow the path. A retry cannot succeed."""

    status, message = 403, "not authorized: insufficient permissions"


class KeyNotFound(APIError):
    """The named key does not exist in the keystore. A retry cannot succeed."""

    status, message = 404, "key does not exist"


class KeyExists(APIError):
    """Create or import of a key name that is taken. A retry cannot succeed."""

    status, message = 400, "key already exists"


class DecryptError(APIError):
    """Wrong key, wrong context or a tampered ciphertext. A retry cannot succeed."""

    status, message = 400, "decryption failed: ciphertext is not authentic"


class PolicyNotFound(APIError):
    """No policy of that name in the server's configuration."""

    status, message = 404, "policy does not exist"


class IdentityNotFound(APIError):
    """The identity is neither the admin nor listed in any policy."""

    status, message = 404, "identity does not exist"


class ServerError(APIError):
    """A 5xx answer (e.g. 502 keystore failure). Another server of the pool may succeed."""

    status, message = 500, "internal error"


class KESUnavailable(KESError):
    """Every endpoint of the pool failed (connection error, timeout or 5xx); the message names
    each endpoint and what happened. Retrying later can succeed."""

    def __init__(self, failures: list[tuple[str, str]]):
        self.failures = failures
        detail = "; ".join(f"{url}: {why}" for url, why in failures) or "no endpoints configured"
        super().__init__(f"no KES endpoint answered ({detail})")


_STANDARD: dict[tuple[int, str], type[APIError]] = {
    (cls.status, cls.message): cls
    for cls in (NotAllowed, KeyNotFound, KeyExists, DecryptError, PolicyNotFound,
                IdentityNotFound)
}
# kms-go rewrites the v0.17-era texts onto the current errors.
_LEGACY = {(400, "key does already exist"): KeyExists, (403, "prohibited by policy"): NotAllowed}


def error_from_reply(status: int, message: str) -> APIError:
    """The typed error for a KES reply with status >= 400 (status and text must both match)."""
    cls = _STANDARD.get((status, message)) or _LEGACY.get((status, message))
    if cls is not None:
        return cls()
    if status >= 500:
        return ServerError(message, status)
    return APIError(message, status)
