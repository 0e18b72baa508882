"""The drain switch (Swift's `disable_path`): while the operator's drain file exists, readiness
answers 503 "draining" so load balancers stop routing here, and S3 requests are still served.

The file is looked at most once per `interval` seconds, so probes every few milliseconds cost
one `stat` a second; removing it shows within that second.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

__all__ = ["DRAINING_REASON", "DrainSwitch"]

DRAINING_REASON = "draining: the operator's drain file exists; S3 requests are still served"


class DrainSwitch:
    """`draining` is True while `path` exists (always False without a path)."""

    def __init__(self, path: Path | None, *, interval: float = 1.0):
        self.path = path
        self.interval = interval
        self._draining = False
        self._checked_at = -float("inf")

    @property
    def draining(self) -> bool:
        if self.path is None:
            return False
        now = time.monotonic()
        if now - self._checked_at >= self.interval:
            self._draining = os.path.lexists(self.path)
            self._checked_at = now
        return self._draining
