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
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from station.domain.money import Money
from station.errors import AmountExceeded, PaymentMethodBlocked
from station.services.repositories.agents import Agent
from station.services.repositories.switches import Switch
from station.services.unit_of_work import UnitOfWork, UnitOfWorkFactory
from station.settings import Settings

OPEN_AGENT_ID = "agt_open_payers"
DAY = timedelta(hours=24)
_UNLIMITED_WINDOW = Decimal(1_000_000_000)  # the per-method ceiling is the one that binds


def switch_name(method: str) -> str:
    """The kill switch row of a payment method (names are 32 characters at most)."""
    return "pm:" + hashlib.sha256(method.encode()).hexdigest()[:29]


async def open_agent(units: UnitOfWorkFactory, settings: Settings) -> Agent:
    """The built-in agent of unregistered payers, created (or brought to the settings'
    ceiling) on first use. It has no key: no signature ever verifies as it."""
    async with units.reader() as uow:
        agent = await uow.agents.get(OPEN_AGENT_ID)
    if agent is not None and agent.limit_per_session == settings.open_payer_limit_per_session:
        return agent
    async with units() as uow:
        agent = await uow.agents.get(OPEN_AGENT_ID, lock=True)
        if agent is None:
            agent = Agent(
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
                suspended_reason=None,
                created_at=datetime.now(UTC),
            )
            await uow.agents.add(agent)
            await uow.audit.record(
                actor="system",
                action="agent.open_payers_enabled",
                subject=OPEN_AGENT_ID,
                data={"limit_per_session": str(settings.open_payer_limit_per_session)},
            )
        elif agent.limit_per_session != settings.open_payer_limit_per_session:
            agent = replace(agent, limit_per_session=settings.open_payer_limit_per_session)
            await uow.agents.save(agent)
    return agent


async def check_method(
    uow: UnitOfWork, settings: Settings, method: str, amount: Money, now: datetime
) -> None:
    """Refuse a payment method that is blocked, or whose last 24 hours plus `amount`
    pass the per-method ceiling (sessions that ended unpaid do not count)."""
    switch = await uow.switches.get(switch_name(method))
    if switch is not None and switch.on:
        raise PaymentMethodBlocked("this payment method is blocked by the operator")
    spent = await uow.sessions.spent_by_payer_method(OPEN_AGENT_ID, method, since=now - DAY)
    ceiling = settings.open_payer_limit_per_method_per_day
    remaining = max(ceiling - spent, Decimal(0))
    if amount.amount > remaining:
        raise AmountExceeded(
            f"this payment method may pay {Money(remaining, amount.currency).to_wire()} more today",
            remaining=Money(remaining, amount.currency).to_wire(),
            currency=amount.currency,
        )


async def set_blocked(
    units: UnitOfWorkFactory, method: str, *, on: bool, actor: str, reason: str
) -> None:
    """The kill switch for one payment method (audited with who and why)."""
    name = switch_name(method)
    async with units() as uow:
        await uow.switches.put(Switch(name, on, reason, actor, datetime.now(UTC)))
        await uow.audit.record(
            actor=actor,
            action="payment_method.blocked" if on else "payment_method.unblocked",
            subject=name,
            data={"reason": reason},
        )
