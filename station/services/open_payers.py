"""Unregistered payers: a standard MPP client with no agent key pays, the payment being
its authentication (``settings.open_payers``, off by default).

All of them act as one built-in agent, `OPEN_AGENT_ID`, whose per-session limit is
``open_payer_limit_per_session``; the operator's pause and that agent's suspension
apply to them like to any agent. What tells them apart is the payment method: the
credential's PaymentMethod, or the one a Shared Payment Token was granted from (asked
of Stripe). Per payment method, at most ``open_payer_limit_per_method_per_day`` is held
or captured within 24 hours, and the operator can block one (a kill switch:
`block` / `unblock`, audited). Registered agents are untouched by any of this.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from station.domain.money import Money
from station.domain.session import SessionStatus
from station.errors import AmountExceeded, PaymentMethodBlocked
from station.settings import Settings
from station.store import audit
from station.store.db import Database
from station.store.payments import SessionRow
from station.store.trust import AgentRow, SwitchRow

OPEN_AGENT_ID = "agt_open_payers"
DAY = timedelta(hours=24)
_UNLIMITED_WINDOW = Decimal(1_000_000_000)  # the per-method ceiling is the one that binds
_ENDED_UNPAID = (SessionStatus.FAILED.value, SessionStatus.CANCELLED.value)


def switch_name(method: str) -> str:
    """The kill switch row of a payment method (names are 32 characters at most)."""
    return "pm:" + hashlib.sha256(method.encode()).hexdigest()[:29]


async def open_agent(db: Database, settings: Settings) -> AgentRow:
    """The built-in agent of unregistered payers, created (or brought to the settings'
    ceiling) on first use. It has no key: no signature ever verifies as it."""
    async with db.reader() as session:
        row = await session.get(AgentRow, OPEN_AGENT_ID)
        if row is not None and row.limit_per_session == settings.open_payer_limit_per_session:
            session.expunge(row)
            return row
    async with db.session() as session:
        row = await session.get(AgentRow, OPEN_AGENT_ID)
        if row is None:
            row = AgentRow(
                agent_id=OPEN_AGENT_ID,
                name="unregistered MPP payers",
                owner=None,
                public_key="",
                currency=settings.default_currency,
                limit_per_session=settings.open_payer_limit_per_session,
                limit_per_window=_UNLIMITED_WINDOW,
                window_hours=24,
                allowed_charge_points=None,
                status="active",
            )
            session.add(row)
            await audit.record(
                session,
                actor="system",
                action="agent.open_payers_enabled",
                subject=OPEN_AGENT_ID,
                data={"limit_per_session": str(settings.open_payer_limit_per_session)},
            )
        elif row.limit_per_session != settings.open_payer_limit_per_session:
            row.limit_per_session = settings.open_payer_limit_per_session
        await session.flush()
        session.expunge(row)
    return row


async def check_method(
    session: AsyncSession, settings: Settings, method: str, amount: Money, now: datetime
) -> None:
    """Refuse a payment method that is blocked, or whose last 24 hours plus `amount`
    pass the per-method ceiling (sessions that ended unpaid do not count)."""
    switch = await session.get(SwitchRow, switch_name(method))
    if switch is not None and switch.on:
        raise PaymentMethodBlocked("this payment method is blocked by the operator")
    spent = await session.scalar(
        select(
            func.coalesce(func.sum(func.coalesce(SessionRow.captured, SessionRow.cap)), 0)
        ).where(
            SessionRow.agent_id == OPEN_AGENT_ID,
            SessionRow.payer_method == method,
            SessionRow.created_at >= now - DAY,
            SessionRow.status.not_in(_ENDED_UNPAID),
        )
    )
    ceiling = settings.open_payer_limit_per_method_per_day
    remaining = max(ceiling - Decimal(spent or 0), Decimal(0))
    if amount.amount > remaining:
        raise AmountExceeded(
            f"this payment method may pay {Money(remaining, amount.currency).to_wire()} more today",
            remaining=Money(remaining, amount.currency).to_wire(),
            currency=amount.currency,
        )


async def set_blocked(db: Database, method: str, *, on: bool, actor: str, reason: str) -> None:
    """The kill switch for one payment method (audited with who and why)."""
    name = switch_name(method)
    async with db.session() as session:
        row = await session.get(SwitchRow, name)
        if row is None:
            session.add(SwitchRow(name=name, on=on, reason=reason, actor=actor))
        else:
            row.on, row.reason, row.actor = on, reason, actor
        await audit.record(
            session,
            actor=actor,
            action="payment_method.blocked" if on else "payment_method.unblocked",
            subject=name,
            data={"reason": reason},
        )
