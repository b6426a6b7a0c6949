"""Unregistered payers' decisions, on the in-memory unit of work: the shared agent made
once and kept at the settings' ceiling, a blocked method, the per-method daily ceiling."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from decimal import Decimal

import pytest

from station.domain.money import Money
from station.domain.session import SessionStatus
from station.errors import AmountExceeded, PaymentMethodBlocked
from station.services import open_payers
from station.settings import Settings
from tests.domain.session_builders import a_session
from tests.fakes.unit_of_work import FakeStore

SETTINGS = Settings(
    database_url="sqlite+aiosqlite:///unused.db",
    open_payers=True,
    open_payer_limit_per_session=Decimal("30"),
    open_payer_limit_per_method_per_day=Decimal("50"),
)
METHOD = "payment_method:pm_card_visa"


async def test_the_shared_agent_is_made_once_and_follows_the_settings_ceiling() -> None:
    units = FakeStore()

    first = await open_payers.open_agent(units, SETTINGS)
    again = await open_payers.open_agent(units, SETTINGS)
    raised = await open_payers.open_agent(
        units, SETTINGS.model_copy(update={"open_payer_limit_per_session": Decimal("40")})
    )

    assert first == again and first.public_key == "" and first.status == "active"
    assert raised.limit_per_session == Decimal("40")
    assert units.table("agents")[open_payers.OPEN_AGENT_ID] == raised
    assert [e.action for e in units.table("audit").values()] == ["agent.open_payers_enabled"]


async def test_a_blocked_method_pays_nothing_until_unblocked() -> None:
    units = FakeStore()
    now = a_session().created_at
    await open_payers.set_blocked(units, METHOD, on=True, actor="op", reason="stolen")

    with pytest.raises(PaymentMethodBlocked):
        async with units.reader() as uow:
            await open_payers.check_method(uow, SETTINGS, METHOD, Money(Decimal(1), "eur"), now)

    await open_payers.set_blocked(units, METHOD, on=False, actor="op", reason="found")
    async with units.reader() as uow:
        await open_payers.check_method(uow, SETTINGS, METHOD, Money(Decimal(1), "eur"), now)


async def test_a_methods_day_counts_what_it_held_or_captured_but_not_unpaid_ends() -> None:
    units = FakeStore()
    base = a_session()
    now = base.created_at + timedelta(hours=1)
    paid = replace(base.payment, payer_method=METHOD)
    sessions = units.table("sessions")
    for n, (status, captured) in enumerate(
        [(SessionStatus.SETTLED, "12.00"), (SessionStatus.CHARGING, None)]
    ):
        sessions[f"ses_{n}"] = replace(
            base,
            session_id=f"ses_{n}",
            agent_id=open_payers.OPEN_AGENT_ID,
            status=status,
            payment=paid,
            captured=Money(Decimal(captured), "eur") if captured else None,
        )
    sessions["ses_failed"] = replace(
        sessions["ses_1"], session_id="ses_failed", status=SessionStatus.FAILED
    )
    # 12.00 captured + a 10.00 cap held: 28.00 of the 50 left today.

    async with units.reader() as uow:
        await open_payers.check_method(uow, SETTINGS, METHOD, Money(Decimal("28"), "eur"), now)
        with pytest.raises(AmountExceeded) as refused:
            await open_payers.check_method(
                uow, SETTINGS, METHOD, Money(Decimal("28.01"), "eur"), now
            )
        tomorrow = now + timedelta(hours=24)
        await open_payers.check_method(uow, SETTINGS, METHOD, Money(Decimal(50), "eur"), tomorrow)

    assert refused.value.extra["remaining"] == "28.00"
