"""The agent registry's records and repository."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol


@dataclass(frozen=True, slots=True)
class Agent:
    """A paying agent as stored: who it is, its key, its limits and its status."""

    agent_id: str
    name: str
    owner: str | None
    # Base64 of the raw 32-byte Ed25519 public key.
    public_key: str
    currency: str
    limit_per_session: Decimal
    limit_per_window: Decimal
    window_hours: int
    # None: every charge point; else only these.
    allowed_charge_points: tuple[str, ...] | None
    status: str  # active | suspended | removed
    suspended_reason: str | None
    created_at: datetime


class AgentRepository(Protocol):
    async def get(self, agent_id: str, *, lock: bool = False) -> Agent | None:
        """The agent, or None; `lock` holds its row until the unit ends."""
        ...

    async def list(self, *, status: str | None = None, limit: int | None = None) -> list[Agent]:
        """Every agent (or those in `status`), oldest first, ties by id; the first `limit`."""
        ...

    async def add(self, agent: Agent) -> None:
        """Store a new agent; AlreadyExists if its id is taken."""
        ...

    async def save(self, agent: Agent) -> None:
        """Store the agent's new state (every field but its id); NotFound if absent."""
        ...
