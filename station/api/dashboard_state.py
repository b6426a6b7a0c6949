"""What the dashboard shows at a glance, read in one go: charge points, sessions, money, agents.

Read-only over the charging, payments and trust tables. Money is summed by
the database per currency (exact NUMERIC on PostgreSQL; on SQLite each
amount is already rounded to the minor unit, and the sum is rounded once):

- ``held``: caps of the holds open right now;
- ``captured``: what settled sessions captured;
- ``released``: the part of each ended hold that was not captured;
- ``refunded``: refunds after a capture (none yet: every intent today is a
  hold, captured once or released).
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.money import Money
from station.domain.session import SessionStatus
from station.services.limits import remaining
from station.services.sessions import session_view
from station.services.settlement import HOLD_OPEN
from station.services.unit_of_work import UnitOfWork
from station.store.charging import ChargePointRow, ConnectorRow
from station.store.payments import SessionRow
from station.store.unit_of_work import SqlUnitOfWork

RECENT_SESSIONS = 50
MAX_AGENTS = 200
FINAL = [s.value for s in SessionStatus if s.final]
HOLD_ENDED = ("succeeded", "canceled")


async def snapshot(session: AsyncSession) -> dict[str, Any]:
    return {
        "charge_points": await charge_points(session),
        "sessions": await recent_sessions(session),
        "money": await money(session),
        "agents": await agents(SqlUnitOfWork.bound(session)),
    }


async def charge_points(session: AsyncSession) -> list[dict[str, Any]]:
    statuses: defaultdict[str, list[str]] = defaultdict(list)
    connectors = await session.scalars(
        select(ConnectorRow).order_by(
            ConnectorRow.charge_point_id, ConnectorRow.evse_id, ConnectorRow.connector_id
        )
    )
    for c in connectors:
        statuses[c.charge_point_id].append(f"{c.evse_id}/{c.connector_id} {c.status}")
    rows = await session.scalars(
        select(ChargePointRow)
        .where(ChargePointRow.removed_at.is_(None))
        .order_by(ChargePointRow.charge_point_id)
    )
    return [
        {
            "charge_point_id": r.charge_point_id,
            "connected": r.connected,
            "ocpp_version": r.ocpp_version,
            "status": statuses.get(r.charge_point_id, []),
            "last_seen": r.last_seen,
        }
        for r in rows
    ]


async def recent_sessions(session: AsyncSession) -> list[dict[str, Any]]:
    query = select(SessionRow).order_by(SessionRow.created_at.desc()).limit(RECENT_SESSIONS)
    return [
        {**session_view(row), "agent_id": row.agent_id, "created_at": row.created_at}
        for row in await session.scalars(query)
    ]


async def money(session: AsyncSession) -> dict[str, dict[str, str]]:
    """Per currency: held, captured, released and refunded, as decimal strings."""
    totals: defaultdict[str, dict[str, Decimal]] = defaultdict(
        lambda: dict.fromkeys(("held", "captured", "released", "refunded"), Decimal(0))
    )
    queries = {
        "held": select(SessionRow.currency, func.sum(SessionRow.cap)).where(
            SessionRow.payment_status == HOLD_OPEN, SessionRow.status.not_in(FINAL)
        ),
        "captured": select(SessionRow.currency, func.sum(SessionRow.captured)).where(
            SessionRow.captured.is_not(None)
        ),
        "released": select(
            SessionRow.currency,
            func.sum(SessionRow.cap - func.coalesce(SessionRow.captured, 0)),
        ).where(
            SessionRow.status.in_(FINAL),
            SessionRow.payment_reference.is_not(None),
            SessionRow.payment_status.in_(HOLD_ENDED),
        ),
    }
    for name, query in queries.items():
        for currency, amount in await session.execute(query.group_by(SessionRow.currency)):
            totals[currency][name] = Decimal(amount or 0)
    return {
        currency: {name: Money(amount, currency).to_wire() for name, amount in values.items()}
        for currency, values in sorted(totals.items())
    }


async def agents(uow: UnitOfWork) -> list[dict[str, Any]]:
    out = []
    for agent in await uow.agents.list(limit=MAX_AGENTS):
        left = await remaining(uow, agent)

        def wire(amount: Decimal, currency: str = agent.currency) -> str:
            return Money(amount, currency).to_wire()

        out.append(
            {
                "agent_id": agent.agent_id,
                "name": agent.name,
                "status": agent.status,
                "suspended_reason": agent.suspended_reason,
                "currency": agent.currency,
                "limit_per_session": wire(agent.limit_per_session),
                "limit_per_window": wire(agent.limit_per_window),
                "window_hours": agent.window_hours,
                "remaining": wire(left),
            }
        )
    return out
