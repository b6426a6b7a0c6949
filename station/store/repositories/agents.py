"""Agents: the `agents` table as `station.services.repositories.agents.Agent` records."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from station.errors import NotFound
from station.services.repositories.agents import Agent
from station.store.constraints import translated
from station.store.trust import AgentRow


def agent_of(row: AgentRow) -> Agent:
    allowed = row.allowed_charge_points
    return Agent(
        agent_id=row.agent_id,
        name=row.name,
        owner=row.owner,
        public_key=row.public_key,
        currency=row.currency,
        limit_per_session=row.limit_per_session,
        limit_per_window=row.limit_per_window,
        window_hours=row.window_hours,
        allowed_charge_points=tuple(allowed) if allowed is not None else None,
        status=row.status,
        suspended_reason=row.suspended_reason,
        created_at=row.created_at,
    )


def _write(row: AgentRow, agent: Agent) -> None:
    row.name, row.owner, row.public_key = agent.name, agent.owner, agent.public_key
    row.currency = agent.currency
    row.limit_per_session, row.limit_per_window = agent.limit_per_session, agent.limit_per_window
    row.window_hours = agent.window_hours
    allowed = agent.allowed_charge_points
    row.allowed_charge_points = list(allowed) if allowed is not None else None
    row.status, row.suspended_reason = agent.status, agent.suspended_reason
    row.created_at = agent.created_at


class SqlAgents:
    def __init__(self, session: AsyncSession) -> None:
        self._session = session

    async def _row(self, agent_id: str, *, lock: bool) -> AgentRow | None:
        query = select(AgentRow).where(AgentRow.agent_id == agent_id)
        if lock:
            query = query.with_for_update()
        return (await self._session.scalars(query)).one_or_none()

    async def get(self, agent_id: str, *, lock: bool = False) -> Agent | None:
        row = await self._row(agent_id, lock=lock)
        return agent_of(row) if row is not None else None

    async def list(self, *, status: str | None = None, limit: int | None = None) -> list[Agent]:
        query = select(AgentRow).order_by(AgentRow.created_at, AgentRow.agent_id).limit(limit)
        if status is not None:
            query = query.where(AgentRow.status == status)
        return [agent_of(row) for row in (await self._session.scalars(query)).all()]

    async def add(self, agent: Agent) -> None:
        row = AgentRow(agent_id=agent.agent_id)
        _write(row, agent)
        with translated(key="agent_id"):
            async with self._session.begin_nested():
                self._session.add(row)

    async def save(self, agent: Agent) -> None:
        row = await self._row(agent.agent_id, lock=False)
        if row is None:
            raise NotFound(f"no agent {agent.agent_id}")
        _write(row, agent)
        await self._session.flush()
