"""The POST policy of a browser upload (PostObject): parsing the base64 JSON document, its
expiration, its conditions (exact match, starts-with, content-length-range) and the rule that
every form field be covered by a condition.

Failures are S3's: a document that does not parse is 400 InvalidPolicyDocument; an expired
policy, a condition that fails or an extra field is 403 AccessDenied "Invalid according to
Policy: ...". Field names compare case-insensitively, values exactly.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from .errors import S3Error

__all__ = ["Condition", "PostPolicy", "is_exempt_field", "parse_policy"]

# Fields no condition needs to name: the signature itself, the file, and (as MinIO) fields
# whose value a policy author cannot know: SSE-C key material and the file's checksum.
_EXEMPT = frozenset({"policy", "x-amz-signature", "signature", "awsaccesskeyid", "file"})
_EXEMPT_PREFIXES = ("x-ignore-", "x-amz-server-side-encryption", "x-amz-checksum-")
_MAX_POLICY = 64 * 1024  # bytes of base64 policy: the fields limit bounds it anyway


def is_exempt_field(name: str) -> bool:
    return name in _EXEMPT or name.startswith(_EXEMPT_PREFIXES)


@dataclass(frozen=True)
class Condition:
    operator: str  # "eq" | "starts-with"
    field: str  # lower-case form field name, without the "$"
    value: str

    def holds(self, actual: str) -> bool:
        if self.operator == "eq":
            return actual == self.value
        if self.field == "content-type":  # S3: each of a comma-separated list must match
            return all(item.strip().startswith(self.value) for item in actual.split(","))
        return actual.startswith(self.value)

    def __str__(self) -> str:
        return json.dumps([self.operator, "$" + self.field, self.value])


@dataclass(frozen=True)
class PostPolicy:
    expiration: float  # seconds since the epoch
    conditions: tuple[Condition, ...]
    length_range: tuple[int, int] | None  # content-length-range, inclusive

    def check(self, fields: Mapping[str, str], bucket: str, now: float) -> None:
        """Raise AccessDenied unless the policy is in force and the form satisfies it;
        `fields`: lower-case names (key already with ${filename} substituted)."""
        if now >= self.expiration:
            raise _denied("Policy expired.")
        values = {**fields, "bucket": bucket}
        for condition in self.conditions:
            if not condition.holds(values.get(condition.field, "")):
                raise _denied(f"Policy Condition failed: {condition}")
        covered = {c.field for c in self.conditions}
        extra = sorted(name for name in fields
                       if name not in covered and not is_exempt_field(name))
        if extra:
            raise _denied(f"Extra input fields: {', '.join(extra)}")


def _denied(reason: str) -> S3Error:
    return S3Error("AccessDenied", f"Invalid according to Policy: {reason}")


def _invalid(reason: str) -> S3Error:
    return S3Error("InvalidPolicyDocument", f"Invalid Policy: {reason}")


def _parse_expiration(value: object) -> float:
    if not isinstance(value, str):
        raise _invalid("The policy must contain an expiration.")
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid(f"Invalid 'expiration' value: {value[:40]!r}.") from None
    if when.tzinfo is None:
        raise _invalid("The expiration must be in UTC (end it with 'Z').")
    return when.timestamp()


def _length(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise _invalid("content-length-range bounds must be integers.")
    if isinstance(value, str) and not value.strip().isdigit():
        raise _invalid("content-length-range bounds must be integers.")
    number = int(value)
    if number < 0:
        raise _invalid("content-length-range bounds must not be negative.")
    return number


def _parse_condition(item: object, out: list[Condition]) -> tuple[int, int] | None:
    """Append the condition(s) of one policy entry; a content-length-range is returned."""
    if isinstance(item, dict):
        for name, value in item.items():
            if not isinstance(value, str):
                raise _invalid(f"The condition for {name!r} must be a string.")
            out.append(Condition("eq", name.lower().removeprefix("$"), value))
        return None
    if not isinstance(item, list) or len(item) != 3 or not isinstance(item[0], str):
        raise _invalid(f"Condition {json.dumps(item)[:80]} is malformed.")
    operator = item[0].lower()
    if operator == "content-length-range":
        low, high = _length(item[1]), _length(item[2])
        if low > high:
            raise _invalid("content-length-range minimum exceeds its maximum.")
        return low, high
    if operator not in ("eq", "starts-with"):
        raise _invalid(f"Unknown condition operator {item[0][:20]!r}.")
    name, value = item[1], item[2]
    if not isinstance(name, str) or not name.startswith("$") or not isinstance(value, str):
        raise _invalid(f"Condition {json.dumps(item)[:80]} is malformed.")
    out.append(Condition(operator, name[1:].lower(), value))
    return None


def parse_policy(encoded: str) -> PostPolicy:
    """The policy in a form's `policy` field (base64 of UTF-8 JSON)."""
    if len(encoded) > _MAX_POLICY:
        raise _invalid("The policy document is too large.")
    try:
        document = json.loads(base64.b64decode(encoded.strip(), validate=True))
    except (binascii.Error, ValueError):
        raise _invalid("The policy is not base64-encoded JSON.") from None
    if not isinstance(document, dict):
        raise _invalid("The policy must be a JSON object.")
    expiration = _parse_expiration(document.get("expiration"))
    raw = document.get("conditions", [])
    if not isinstance(raw, list):
        raise _invalid("'conditions' must be a list.")
    conditions: list[Condition] = []
    length_range = None
    for item in raw:
        length_range = _parse_condition(item, conditions) or length_range
    return PostPolicy(expiration, tuple(conditions), length_range)
