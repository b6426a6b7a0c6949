"""Spending limits on the persistence port: reserve a session's hold, settle it.

`reserve()` counts a new hold against the agent's limits inside the caller's
unit of work and writes it to the spend ledger; `settle()` replaces the hold
with what was captured (0 when cancelled), which gives the released money back
to the window. Both lock the agent's row (``SELECT … FOR UPDATE`` on
PostgreSQL; SQLite's units already hold the write lock), so two station
nodes reserving for one agent at once queue instead of both passing the limit.

Call them in the unit of work that creates or settles the session, so the
ledger and the session commit or roll back together::

    async with units() as uow:
        await limits.reserve(uow, agent_id=..., session_id=..., amount=cap, currency="usd")
        ... create the session ...
"""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal

from station.domain.limits import SpendingLimits, decide, remaining_allowance
from station.domain.money import Money
from station.errors import AgentSuspended, AmountExceeded, Conflict, NotFound
from station.logs import get_logger
from station.metrics import StationMetrics, metrics_for
from station.services.repositories.agents import Agent
from station.services.repositories.spend import Spend
from station.services.unit_of_work import UnitOfWork

_log = get_logger(__name__)
PAUSE = "pause"


def limits_of(agent: Agent) -> SpendingLimits:
    return SpendingLimits(
        currency=agent.currency,
        limit_per_session=agent.limit_per_session,
        limit_per_window=agent.limit_per_window,
        window_hours=agent.window_hours,
    )


async def is_paused(uow: UnitOfWork) -> bool:
    """Is the operator-wide switch that refuses new authorisations on?"""
    switch = await uow.switches.get(PAUSE)
    return bool(switch and switch.on)


async def _locked_agent(uow: UnitOfWork, agent_id: str) -> Agent:
    agent = await uow.agents.get(agent_id, lock=True)
    if agent is None:
        raise NotFound(f"no agent {agent_id}")
    return agent


async def spent_in_window(
    uow: UnitOfWork, agent: Agent, *, now: datetime, excluding: str | None = None
) -> Decimal:
    """What the agent's holds and captures started within its window add up to."""
    since = limits_of(agent).window_start(now)
    return await uow.spend.total(agent.agent_id, since=since, excluding=excluding)


async def remaining(uow: UnitOfWork, agent: Agent, *, now: datetime | None = None) -> Decimal:
    """What one new session of this agent could hold right now."""
    spent = await spent_in_window(uow, agent, now=now or datetime.now(UTC))
    return remaining_allowance(limits_of(agent), spent)


async def reserve(
    uow: UnitOfWork,
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
    now = now or datetime.now(UTC)
    log = _log.bind(agent_id=agent_id, session_id=session_id)
    agent = await _locked_agent(uow, agent_id)
    if agent.status != "active":
        raise AgentSuspended(f"agent {agent_id} is suspended")
    if await is_paused(uow):
        raise AgentSuspended("the operator has paused all new authorisations")
    existing = await uow.spend.get(session_id)
    if existing is not None and existing.status != "held":
        raise Conflict(f"session {session_id} is already settled")
    spent = await spent_in_window(uow, agent, now=now, excluding=session_id)
    decision = decide(limits_of(agent), spent_in_window=spent, amount=amount, currency=currency)
    if not decision.allowed:
        metrics = metrics or metrics_for(uow)
        if metrics is not None:
            metrics.limit_refusals.labels(currency=agent.currency).inc()
        log.info("limits.refused", amount=amount, remaining=decision.remaining)
        raise AmountExceeded(
            decision.reason or "amount exceeds the agent's limits",
            remaining=Money(decision.remaining, agent.currency).to_wire(),
            currency=agent.currency,
        )
    if existing is None:
        await uow.spend.add(
            Spend(
                session_id=session_id,
                agent_id=agent_id,
                currency=currency,
                amount=amount,
                status="held",
                created_at=now,
            )
        )
    else:
        await uow.spend.save(replace(existing, amount=amount))
    log.info("limits.reserved", amount=amount, remaining=decision.remaining)


async def settle(
    uow: UnitOfWork, *, session_id: str, amount: Decimal, now: datetime | None = None
) -> None:
    """Replace the session's hold with the captured `amount` (0 on cancel).

    Idempotent; a session that was never reserved is logged and ignored.
    """
    entry = await uow.spend.get(session_id)
    log = _log.bind(session_id=session_id)
    if entry is None:
        log.warning("limits.settle_unknown_session", amount=amount)
        return
    await _locked_agent(uow, entry.agent_id)
    if amount > entry.amount:
        log.warning("limits.captured_above_hold", held=entry.amount, amount=amount)
    settled = replace(entry, amount=amount, status="settled", settled_at=now or datetime.now(UTC))
    await uow.spend.save(settled)
    log.info("limits.settled", agent_id=entry.agent_id, amount=amount)
