"""The spend ledger: one entry per session an agent pays for (its hold, then its capture)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Spend:
    session_id: str
    agent_id: str
    currency: str
    # The hold while held; the captured amount (0 when cancelled) once settled.
    amount: Decimal
    status: str  # held | settled
    created_at: datetime
    settled_at: datetime | None = None


class SpendLedger(Protocol):
    async def get(self, session_id: str) -> Spend | None: ...

    async def add(self, spend: Spend) -> None:
        """A new entry; AlreadyExists if the session has one."""
        ...

    async def save(self, spend: Spend) -> None:
        """The entry's new amount, status and settled_at; NotFound if absent."""
        ...

    async def total(
        self, agent_id: str, *, since: datetime, excluding: str | None = None
    ) -> Decimal:
        """What the agent's entries created at or after `since` add up to (0 if none)."""
        ...
