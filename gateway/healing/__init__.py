"""Healing: the durable heal queue, the healer (heal_object, bucket healing), the worker that
drains the queue, the background scanner and full heal passes. See docs/design/healing.md."""

from gateway.healing.config import HealConfig
from gateway.healing.durable_queue import DurableHealQueue, HealEntry, QueuePolicy
from gateway.healing.full_pass import PassReport, heal_pass
from gateway.healing.healer import Healer, HealResult
from gateway.healing.service import HealService, HealStatistics, open_heal_queue

__all__ = [
    "DurableHealQueue",
    "HealConfig",
    "HealEntry",
    "HealResult",
    "HealService",
    "HealStatistics",
    "Healer",
    "PassReport",
    "QueuePolicy",
    "heal_pass",
    "open_heal_queue",
]
