"""Spending limits: holds count, settlements give money back (decisions, on the
in-memory unit of work), parallel reserves never pass the limit together (on
both real databases: that is the adapters' row locking)."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest

from station.errors import AgentSuspended, AmountExceeded, ChargepayError
from station.services import agents, limits
from station.services.repositories.switches import Switch
from station.services.unit_of_work import UnitOfWorkFactory
from station.store.base import utcnow
from station.store.db import Database
from station.store.unit_of_work import SqlUnitsOfWork
from tests.fakes.unit_of_work import FakeStore
from vehicle.signing import generate_keypair, public_key_b64


@pytest.fixture
def units() -> FakeStore:
    return FakeStore()


async def make_agent(
    units: UnitOfWorkFactory,
    *,
    per_session: str = "50.00",
    per_window: str = "200.00",
    hours: int = 24,
) -> str:
    key, _ = generate_keypair()
    async with units() as uow:
        agent = await agents.register(
            uow,
            agents.NewAgent(
                name="fleet-car-7",
                public_key=public_key_b64(key),
                currency="usd",
                limit_per_session=per_session,
                limit_per_window=per_window,
                window_hours=hours,
            ),
            actor="test",
        )
    return agent.agent_id


async def reserve(
    units: UnitOfWorkFactory, agent_id: str, session_id: str, amount: str, **kw: object
) -> None:
    async with units() as uow:
        await limits.reserve(
            uow,
            agent_id=agent_id,
            session_id=session_id,
            amount=Decimal(amount),
            currency="usd",
            **kw,  # type: ignore[arg-type]
        )


async def test_holds_add_up_until_the_window_is_full(units: FakeStore) -> None:
    agent_id = await make_agent(units, per_window="100.00")
    await reserve(units, agent_id, "ses_1", "50.00")
    await reserve(units, agent_id, "ses_2", "40.00")

    with pytest.raises(AmountExceeded) as refused:
        await reserve(units, agent_id, "ses_3", "20.00")

    assert refused.value.extra == {"remaining": "10.00", "currency": "usd"}
    assert refused.value.status == 403


async def test_the_per_session_limit_holds(units: FakeStore) -> None:
    agent_id = await make_agent(units, per_session="30.00")

    with pytest.raises(AmountExceeded) as refused:
        await reserve(units, agent_id, "ses_1", "30.01")

    assert refused.value.extra["remaining"] == "30.00"


async def test_settling_gives_the_released_money_back_to_the_window(units: FakeStore) -> None:
    agent_id = await make_agent(units, per_window="100.00", per_session="100.00")
    await reserve(units, agent_id, "ses_1", "100.00")

    async with units() as uow:
        await limits.settle(uow, session_id="ses_1", amount=Decimal("12.34"))
    await reserve(units, agent_id, "ses_2", "87.66")

    with pytest.raises(AmountExceeded):
        await reserve(units, agent_id, "ses_3", "0.01")


async def test_a_cancelled_session_frees_its_whole_hold(units: FakeStore) -> None:
    agent_id = await make_agent(units, per_window="50.00")
    await reserve(units, agent_id, "ses_1", "50.00")

    async with units() as uow:
        await limits.settle(uow, session_id="ses_1", amount=Decimal(0))

    await reserve(units, agent_id, "ses_2", "50.00")


async def test_holds_older_than_the_window_no_longer_count(units: FakeStore) -> None:
    agent_id = await make_agent(units, per_window="50.00", hours=1)
    await reserve(units, agent_id, "ses_old", "50.00", now=utcnow() - timedelta(hours=2))

    await reserve(units, agent_id, "ses_new", "50.00")


async def test_reserving_again_for_a_session_replaces_its_hold(units: FakeStore) -> None:
    agent_id = await make_agent(units, per_window="50.00")
    await reserve(units, agent_id, "ses_1", "50.00")

    await reserve(units, agent_id, "ses_1", "30.00")
    await reserve(units, agent_id, "ses_2", "20.00")


async def test_a_suspended_agent_reserves_nothing(units: FakeStore) -> None:
    agent_id = await make_agent(units)
    async with units() as uow:
        await agents.suspend(uow, agent_id, reason="stolen car", actor="test")

    with pytest.raises(AgentSuspended):
        await reserve(units, agent_id, "ses_1", "1.00")


async def test_the_operator_pause_refuses_every_agent(units: FakeStore) -> None:
    agent_id = await make_agent(units)
    async with units() as uow:
        await uow.switches.put(Switch("pause", True, "incident", "test", utcnow()))

    with pytest.raises(AgentSuspended):
        await reserve(units, agent_id, "ses_1", "1.00")


async def _reserve_and_linger(db: Database, agent_id: str, session_id: str) -> str:
    try:
        async with SqlUnitsOfWork(db)() as uow:
            await limits.reserve(
                uow,
                agent_id=agent_id,
                session_id=session_id,
                amount=Decimal("60.00"),
                currency="usd",
            )
            # Keep the unit open so the other reserve runs while this one holds its lock.
            await asyncio.sleep(0.2)
    except ChargepayError as exc:
        return f"{exc.code}:{exc.extra.get('remaining')}"
    return "ok"


async def test_two_parallel_reserves_never_pass_the_limit_together(db: Database) -> None:
    agent_id = await make_agent(SqlUnitsOfWork(db), per_session="100.00", per_window="100.00")

    outcomes = await asyncio.gather(
        _reserve_and_linger(db, agent_id, "ses_a"), _reserve_and_linger(db, agent_id, "ses_b")
    )

    assert sorted(outcomes) == ["amount_exceeded:40.00", "ok"]
