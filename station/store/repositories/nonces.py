"""Signature nonces on the `signature_nonces` table."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from station.store.constraints import translated
from station.store.trust import NonceRow


class SqlNonces:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def add(self, agent_id: str, nonce: str, *, expires_at: datetime) -> None:
        # No savepoint (this runs on every signed request): a refusal ends the unit.
        with translated(key="nonce"):
            self._session.add(NonceRow(agent_id=agent_id, nonce=nonce, expires_at=expires_at))
            await self._session.flush()

    async def purge_expired(
        self, now: datetime, *, agent_id: str | None = None, limit: int | None = None
    ) -> int:
        """Of one agent: at most `limit` rows, skipping those another unit holds.

        Parallel requests of one agent (or another node) clean up the same rows;
        waiting for each other's row locks in different orders deadlocked on
        PostgreSQL. A row someone else holds is theirs to delete (``SKIP
        LOCKED``; SQLite serialises writers and has no row locks).
        """
        if agent_id is None:
            result = await self._session.execute(delete(NonceRow).where(NonceRow.expires_at < now))
            return int(getattr(result, "rowcount", 0) or 0)
        # Two statements: PostgreSQL may rescan a LIMIT … SKIP LOCKED subquery inside
        # DELETE … IN (…) and delete more than the batch (the contract test caught it).
        expired = list(
            await self._session.scalars(
                select(NonceRow.nonce)
                .where(NonceRow.agent_id == agent_id, NonceRow.expires_at < now)
                .limit(limit)
                .with_for_update(skip_locked=True)
            )
        )
        if expired:
            await self._session.execute(
                delete(NonceRow).where(NonceRow.agent_id == agent_id, NonceRow.nonce.in_(expired))
            )
        return len(expired)
