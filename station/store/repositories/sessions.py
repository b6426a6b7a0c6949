"""Sessions (h3 owns this repository: the Session aggregate's persistence)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.session import SessionStatus
from station.store.payments import SessionRow

_LIVE = tuple(s.value for s in SessionStatus if not s.final)


class SqlSessions:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def live_session_of_agent(self, agent_id: str) -> str | None:
        query = (
            select(SessionRow.session_id)
            .where(SessionRow.agent_id == agent_id, SessionRow.status.in_(_LIVE))
            .limit(1)
        )
        return (await self._session.scalars(query)).first()
