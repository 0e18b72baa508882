"""The digest a listing sends in place of a version's metadata blob (ObjectVersion.meta_digest).

Node and gateway both use this one function, so they can never disagree about a digest."""

from __future__ import annotations

import hashlib

__all__ = ["meta_digest"]


def meta_digest(meta: bytes) -> bytes:
    """8 bytes of BLAKE2b: enough to tell a set's few copies of one version's blob apart."""
    return hashlib.blake2b(meta, digest_size=8).digest()
