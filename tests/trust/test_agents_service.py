"""The agent registry's decisions, on the in-memory unit of work (the SQL adapter's
side of the same contract is tests/store/test_unit_of_work_contract.py)."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

import pytest

from station.domain.session import SessionStatus
from station.errors import Conflict, NotFound, ValidationError
from station.services import agents
from station.store.audit import AuditEntry
from tests.domain.session_builders import a_session
from tests.fakes.unit_of_work import FakeStore
from vehicle.signing import generate_keypair, public_key_b64


def new_agent(**changes: object) -> agents.NewAgent:
    key, _ = generate_keypair()
    fields: dict[str, object] = {
        "name": "fleet-car-7",
        "public_key": public_key_b64(key),
        "currency": "usd",
        "limit_per_session": "50.00",
        "limit_per_window": "200.00",
        **changes,
    }
    return agents.NewAgent(**fields)  # type: ignore[arg-type]


def audited(units: FakeStore) -> list[str]:
    entries: dict[int, AuditEntry] = units.table("audit")
    return [entry.action for _, entry in sorted(entries.items())]


async def test_a_registered_agent_is_active_with_exact_limits_and_audited() -> None:
    units = FakeStore()

    async with units() as uow:
        agent = await agents.register(uow, new_agent(allowed_charge_points=["CP-1"]), actor="op")

    assert agent.status == "active" and agent.agent_id.startswith("agt_")
    assert agent.limit_per_session == Decimal("50.00")
    assert agent.allowed_charge_points == ("CP-1",)
    assert units.table("agents")[agent.agent_id] == agent
    assert audited(units) == ["agent.registered"]


@pytest.mark.parametrize(
    "changes",
    [
        {"name": " "},
        {"public_key": "bm90IDMyIGJ5dGVz"},
        {"limit_per_session": "300.00"},
        {"limit_per_session": "1.001"},
        {"window_hours": 24 * 367},
    ],
)
async def test_a_bad_registration_stores_nothing(changes: dict[str, object]) -> None:
    units = FakeStore()

    with pytest.raises(ValidationError):
        async with units() as uow:
            await agents.register(uow, new_agent(**changes), actor="op")

    assert units.table("agents") == {} and audited(units) == []


async def test_an_update_changes_only_what_it_names_and_keeps_the_currency() -> None:
    units = FakeStore()
    async with units() as uow:
        agent = await agents.register(uow, new_agent(), actor="op")

    async with units() as uow:
        updated = await agents.update(
            uow, agent.agent_id, {"limit_per_window": "100.00", "owner": "ops"}, actor="op"
        )

    assert (updated.limit_per_window, updated.owner) == (Decimal("100.00"), "ops")
    assert (updated.name, updated.currency) == (agent.name, "usd")
    assert units.table("agents")[agent.agent_id] == updated
    with pytest.raises(ValidationError):
        async with units() as uow:
            await agents.update(uow, agent.agent_id, {"currency": "eur"}, actor="op")


async def test_suspend_and_resume_flip_the_status_with_the_reason() -> None:
    units = FakeStore()
    async with units() as uow:
        agent = await agents.register(uow, new_agent(), actor="op")

    async with units() as uow:
        suspended = await agents.suspend(uow, agent.agent_id, reason="lost key", actor="op")
    async with units() as uow:
        resumed = await agents.resume(uow, agent.agent_id, actor="op")

    assert (suspended.status, suspended.suspended_reason) == ("suspended", "lost key")
    assert (resumed.status, resumed.suspended_reason) == ("active", None)
    assert audited(units) == ["agent.registered", "agent.suspended", "agent.resumed"]


async def test_an_agent_with_a_live_session_is_not_removed() -> None:
    units = FakeStore()
    async with units() as uow:
        agent = await agents.register(uow, new_agent(), actor="op")
    live = replace(a_session(), agent_id=agent.agent_id, status=SessionStatus.CHARGING)
    units.table("sessions")["ses_1"] = live

    with pytest.raises(Conflict):
        async with units() as uow:
            await agents.remove(uow, agent.agent_id, reason="gone", actor="op")

    units.table("sessions")["ses_1"] = replace(live, status=SessionStatus.SETTLED)
    async with units() as uow:
        removed = await agents.remove(uow, agent.agent_id, reason="gone", actor="op")
    assert removed.status == "removed"
    with pytest.raises(Conflict):
        async with units() as uow:
            await agents.resume(uow, agent.agent_id, actor="op")


async def test_an_unknown_agent_is_not_found() -> None:
    units = FakeStore()

    with pytest.raises(NotFound):
        async with units.reader() as uow:
            await agents.get(uow, "agt_none")
