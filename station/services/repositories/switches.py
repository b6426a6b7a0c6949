"""Operator switches: the operator-wide pause and the per-payment-method blocks."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Switch:
    name: str  # "pause", or "pm:<hash>" for a payment method
    on: bool
    reason: str | None
    actor: str
    changed_at: datetime


class SwitchRepository(Protocol):
    async def get(self, name: str, *, lock: bool = False) -> Switch | None: ...

    async def put(self, switch: Switch) -> None:
        """Store the switch, created or replaced."""
        ...
