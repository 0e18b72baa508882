"""Who may call what: the admin identity, policies (allow/deny patterns) and their identities."""

from __future__ import annotations

import datetime
import re
from dataclasses import dataclass, field

from .errors import NotAllowed

__all__ = ["Authorizer", "Policy", "match_pattern", "valid_name", "valid_pattern"]

_NAME = re.compile(r"[0-9A-Za-z_-]{1,80}")
_PATTERN = re.compile(r"[0-9A-Za-z_-]{0,80}\*?")


def valid_name(name: str) -> bool:
    """KES name rules for keys, policies and identities."""
    return (bool(_NAME.fullmatch(name)) and name != "_"
            and not name.startswith("-") and not name.endswith("-"))


def valid_pattern(pattern: str) -> bool:
    """A list pattern: name characters, optionally ending in `*`; empty is valid."""
    return bool(_PATTERN.fullmatch(pattern)) and len(pattern) <= 80


def match_pattern(pattern: str, path: str) -> bool:
    """Current KES semantics: a trailing `*` is a plain prefix match (crossing `/`), else equal."""
    if pattern.endswith("*"):
        return path.startswith(pattern[:-1])
    return pattern == path


@dataclass(frozen=True)
class Policy:
    """A named policy from the config file."""

    name: str
    allow: tuple[str, ...] = ()
    deny: tuple[str, ...] = ()
    identities: tuple[str, ...] = ()
    created_at: datetime.datetime = field(
        default_factory=lambda: datetime.datetime.now(datetime.UTC))

    def allows(self, path: str) -> bool:
        if any(match_pattern(p, path) for p in self.deny):
            return False
        return any(match_pattern(p, path) for p in self.allow)


class Authorizer:
    """Maps identities to policies and decides requests (KES `verifyIdentity`)."""

    def __init__(self, admin: str | None, policies: dict[str, Policy]):
        self.admin = admin
        self.policies = policies
        self.by_identity = {ident: p for p in policies.values() for ident in p.identities}

    def is_admin(self, identity: str) -> bool:
        return self.admin is not None and identity == self.admin

    def policy_of(self, identity: str) -> Policy | None:
        return self.by_identity.get(identity)

    def verify(self, identity: str, path: str) -> None:
        """Raise NotAllowed unless the identity is the admin or its policy allows `path`."""
        if self.is_admin(identity):
            return
        policy = self.by_identity.get(identity)
        if policy is None or not policy.allows(path):
            raise NotAllowed
