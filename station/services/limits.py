"""Spending limits against the database: reserve a session's hold, settle it.

`reserve()` counts a new hold against the agent's limits inside the caller's
unit of work and writes it to the spend ledger; `settle()` replaces the hold
with what was captured (0 when cancelled), which gives the released money back
to the window. Both lock the agent's row (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's units already hold the write lock), so two station
nodes reserving for one agent at once queue instead of both passing the limit.

Call them in the unit of work that creates or settles the session, so the
ledger and the session commit or roll back together::

    async with db.session() as session:
        await limits.reserve(session, agent_id=..., session_id=..., amount=cap, currency="usd")
        ... create the session row ...
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.limits import SpendingLimits, decide, remaining_allowance
from station.domain.money import Money
from station.errors import AgentSuspended, AmountExceeded, Conflict, NotFound
from station.logs import get_logger
from station.metrics import StationMetrics, metrics_for
from station.services.repositories.agents import Agent
from station.store.base import utcnow
from station.store.trust import AgentRow, SpendRow, SwitchRow

_log = get_logger(__name__)
PAUSE = "pause"


def limits_of(agent: Agent | AgentRow) -> SpendingLimits:
    return SpendingLimits(
        currency=agent.currency,
        limit_per_session=agent.limit_per_session,
        limit_per_window=agent.limit_per_window,
        window_hours=agent.window_hours,
    )


async def is_paused(session: AsyncSession) -> bool:
    """Is the operator-wide switch that refuses new authorisations on?"""
    switch = await session.get(SwitchRow, PAUSE)
    return bool(switch and switch.on)


async def _locked_agent(session: AsyncSession, agent_id: str) -> AgentRow:
    agent = (
        await session.scalars(
            select(AgentRow).where(AgentRow.agent_id == agent_id).with_for_update()
        )
    ).one_or_none()
    if agent is None:
        raise NotFound(f"no agent {agent_id}")
    return agent


async def spent_in_window(
    session: AsyncSession, agent: Agent | AgentRow, *, now: datetime, excluding: str | None = None
) -> Decimal:
    """What the agent's holds and captures started within its window add up to."""
    query = select(func.coalesce(func.sum(SpendRow.amount), 0)).where(
        SpendRow.agent_id == agent.agent_id,
        SpendRow.created_at >= limits_of(agent).window_start(now),
    )
    if excluding is not None:
        query = query.where(SpendRow.session_id != excluding)
    return Decimal((await session.execute(query)).scalar_one())


async def remaining(
    session: AsyncSession, agent: Agent | AgentRow, *, now: datetime | None = None
) -> Decimal:
    """What one new session of this agent could hold right now."""
    spent = await spent_in_window(session, agent, now=now or utcnow())
    return remaining_allowance(limits_of(agent), spent)


async def reserve(
    session: AsyncSession,
    *,
    agent_id: str,
    session_id: str,
    amount: Decimal,
    currency: str,
    now: datetime | None = None,
    metrics: StationMetrics | None = None,
) -> None:
    """Count `amount` against the agent's limits and hold it in the ledger.

    Raises AgentSuspended (suspended agent, or the operator paused all new
    authorisations) or AmountExceeded (403, with ``remaining`` and
    ``currency`` in the problem). Reserving again for the same session
    replaces its earlier hold (a retried accept). Takes the agent's row lock
    until the caller's unit of work ends.
    """
    now = now or utcnow()
    log = _log.bind(agent_id=agent_id, session_id=session_id)
    agent = await _locked_agent(session, agent_id)
    if agent.status != "active":
        raise AgentSuspended(f"agent {agent_id} is suspended")
    if await is_paused(session):
        raise AgentSuspended("the operator has paused all new authorisations")
    existing = await session.get(SpendRow, session_id)
    if existing is not None and existing.status != "held":
        raise Conflict(f"session {session_id} is already settled")
    spent = await spent_in_window(session, agent, now=now, excluding=session_id)
    decision = decide(limits_of(agent), spent_in_window=spent, amount=amount, currency=currency)
    if not decision.allowed:
        metrics = metrics or metrics_for(session)
        if metrics is not None:
            metrics.limit_refusals.labels(currency=agent.currency).inc()
        log.info("limits.refused", amount=amount, remaining=decision.remaining)
        raise AmountExceeded(
            decision.reason or "amount exceeds the agent's limits",
            remaining=Money(decision.remaining, agent.currency).to_wire(),
            currency=agent.currency,
        )
    if existing is None:
        session.add(
            SpendRow(
                session_id=session_id,
                agent_id=agent_id,
                currency=currency,
                amount=amount,
                status="held",
                created_at=now,
            )
        )
    else:
        existing.amount = amount
    await session.flush()
    log.info("limits.reserved", amount=amount, remaining=decision.remaining)


async def settle(
    session: AsyncSession, *, session_id: str, amount: Decimal, now: datetime | None = None
) -> None:
    """Replace the session's hold with the captured `amount` (0 on cancel).

    Idempotent; a session that was never reserved is logged and ignored.
    """
    row = await session.get(SpendRow, session_id)
    log = _log.bind(session_id=session_id)
    if row is None:
        log.warning("limits.settle_unknown_session", amount=amount)
        return
    await _locked_agent(session, row.agent_id)
    if amount > row.amount:
        log.warning("limits.captured_above_hold", held=row.amount, amount=amount)
    row.amount, row.status, row.settled_at = amount, "settled", now or utcnow()
    await session.flush()
    log.info("limits.settled", agent_id=row.agent_id, amount=amount)
