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

from station.domain.money import Money
from station.services.limits import remaining
from station.services.repositories.reports import SessionFilter
from station.services.sessions import session_view
from station.services.unit_of_work import UnitOfWork

RECENT_SESSIONS = 50
MAX_AGENTS = 200


async def snapshot(uow: UnitOfWork) -> dict[str, Any]:
    """Read it in one reading unit (`units.reader()`)."""
    return {
        "charge_points": await charge_points(uow),
        "sessions": await recent_sessions(uow),
        "money": await money(uow),
        "agents": await agents(uow),
    }


async def charge_points(uow: UnitOfWork) -> list[dict[str, Any]]:
    return [
        {
            "charge_point_id": p.charge_point_id,
            "connected": p.connected,
            "ocpp_version": p.ocpp_version,
            "status": list(p.connectors),
            "last_seen": p.last_seen,
        }
        for p in await uow.reports.charge_points()
    ]


async def recent_sessions(uow: UnitOfWork) -> list[dict[str, Any]]:
    return [
        {**session_view(s), "agent_id": s.agent_id, "created_at": s.created_at}
        for s in await uow.reports.sessions(SessionFilter(), limit=RECENT_SESSIONS)
    ]


async def money(uow: UnitOfWork) -> dict[str, dict[str, str]]:
    """Per currency: held, captured, released and refunded, as decimal strings."""
    totals: defaultdict[str, dict[str, Decimal]] = defaultdict(
        lambda: dict.fromkeys(("held", "captured", "released", "refunded"), Decimal(0))
    )
    figures = await uow.reports.money_by_hold()
    for name, by_currency in (
        ("held", figures.held),
        ("captured", figures.captured),
        ("released", figures.released),
    ):
        for currency, amount in by_currency.items():
            totals[currency][name] = amount
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
