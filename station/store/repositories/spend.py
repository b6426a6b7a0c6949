"""The spend ledger on the `spend_ledger` table."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from station.errors import NotFound
from station.services.repositories.spend import Spend
from station.store.constraints import translated
from station.store.trust import SpendRow


def spend_of(row: SpendRow) -> Spend:
    return Spend(
        session_id=row.session_id,
        agent_id=row.agent_id,
        currency=row.currency,
        amount=row.amount,
        status=row.status,
        created_at=row.created_at,
        settled_at=row.settled_at,
    )


class SqlSpendLedger:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def get(self, session_id: str) -> Spend | None:
        row = await self._session.get(SpendRow, session_id)
        return spend_of(row) if row is not None else None

    async def add(self, spend: Spend) -> None:
        row = SpendRow(
            session_id=spend.session_id,
            agent_id=spend.agent_id,
            currency=spend.currency,
            amount=spend.amount,
            status=spend.status,
            created_at=spend.created_at,
            settled_at=spend.settled_at,
        )
        with translated(key="session_id"):
            async with self._session.begin_nested():
                self._session.add(row)

    async def save(self, spend: Spend) -> None:
        row = await self._session.get(SpendRow, spend.session_id)
        if row is None:
            raise NotFound(f"no spend entry for session {spend.session_id}")
        row.amount, row.status, row.settled_at = spend.amount, spend.status, spend.settled_at
        await self._session.flush()

    async def total(
        self, agent_id: str, *, since: datetime, excluding: str | None = None
    ) -> Decimal:
        query = select(func.coalesce(func.sum(SpendRow.amount), 0)).where(
            SpendRow.agent_id == agent_id, SpendRow.created_at >= since
        )
        if excluding is not None:
            query = query.where(SpendRow.session_id != excluding)
        return Decimal((await self._session.execute(query)).scalar_one())
