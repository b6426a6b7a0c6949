"""Signature nonces already seen, per agent, kept until they expire."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol


class NonceRepository(Protocol):
    async def add(self, agent_id: str, nonce: str, *, expires_at: datetime) -> None:
        """Remember a nonce; AlreadyExists (key ``"nonce"``) if the agent used it already,
        on any node. After that refusal the unit is spent: let it end (roll back)."""
        ...

    async def purge_expired(
        self, now: datetime, *, agent_id: str | None = None, limit: int | None = None
    ) -> int:
        """Forget nonces expired before `now`: all of them, or of one agent at most
        `limit` (rows another unit holds are skipped, not waited for). How many went."""
        ...
