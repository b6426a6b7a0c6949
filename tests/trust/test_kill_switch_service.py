"""The kill switch's decisions, on the in-memory unit of work: who is stopped here,
who is left to another node, what is reported failed, and the operator pause."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from station.domain.session import SessionStatus
from station.errors import ChargePointNotConnected
from station.services.kill_switch import STOP_REASON, KillSwitch
from station.services.repositories.agents import Agent
from station.store.audit import AuditEntry
from tests.domain.session_builders import a_session
from tests.fakes.unit_of_work import FakeStore

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)


class Stopper:
    def __init__(self, failing: frozenset[str] = frozenset()) -> None:
        self.stopped: list[tuple[str, str]] = []
        self._failing = failing

    async def stop(self, agent_id: str, session_id: str) -> dict[str, Any]:
        if session_id in self._failing:
            raise ChargePointNotConnected("gone")
        self.stopped.append((agent_id, session_id))
        return {}


class Commands:
    """Only the charge points in `here` are connected to this node."""

    def __init__(self, here: set[str]) -> None:
        self._here = here

    def is_connected(self, charge_point_id: str) -> bool:
        return charge_point_id in self._here


def store_with_sessions() -> FakeStore:
    units = FakeStore()
    units.table("agents")["agt_1"] = Agent(
        "agt_1", "car", None, "k", "usd", Decimal(50), Decimal(200), 24, None, "active", None, T0
    )
    sessions = units.table("sessions")
    for n, (cp, ref, status) in enumerate(
        [
            ("CP-here", "tx-1", SessionStatus.CHARGING),
            ("CP-away", "tx-2", SessionStatus.CHARGING),
            ("CP-away", None, SessionStatus.AUTHORIZED),  # not charging yet: any node releases
            ("CP-here", "tx-3", SessionStatus.SETTLED),
        ]
    ):
        base = a_session()
        sessions[f"ses_{n}"] = replace(
            base,
            session_id=f"ses_{n}",
            agent_id="agt_1",
            status=status,
            charge_point_id=cp,
            metering=replace(base.metering, transaction_ref=ref),
            created_at=T0.replace(minute=n),
        )
    return units


def actions(units: FakeStore) -> list[str]:
    entries: dict[int, AuditEntry] = units.table("audit")
    return [e.action for _, e in sorted(entries.items())]


async def test_suspending_stops_what_this_node_can_and_leaves_the_rest() -> None:
    units, stopper = store_with_sessions(), Stopper()
    switch = KillSwitch(units, stopper, Commands({"CP-here"}))

    outcome = await switch.suspend_agent("agt_1", reason="lost key", actor="op")

    assert outcome.agent is not None and outcome.agent.status == "suspended"
    assert outcome.sessions_stopping == ["ses_0", "ses_2"]
    assert outcome.sessions_elsewhere == ["ses_1"]
    assert stopper.stopped == [("agt_1", "ses_0"), ("agt_1", "ses_2")]
    stop_reasons = {k: r.stop_reason for k, r in units.table("sessions").items()}
    assert stop_reasons == {
        "ses_0": STOP_REASON,
        "ses_1": None,
        "ses_2": STOP_REASON,
        "ses_3": None,
    }
    assert actions(units) == ["agent.suspended", "agent.sessions_stopped"]


async def test_a_stop_that_fails_is_reported_and_the_others_still_stop() -> None:
    units, stopper = store_with_sessions(), Stopper(failing=frozenset({"ses_0"}))
    switch = KillSwitch(units, stopper, Commands({"CP-here", "CP-away"}))  # all here

    outcome = await switch.suspend_agent("agt_1", reason="lost key", actor="op")

    assert outcome.sessions_failed == ["ses_0"]
    assert outcome.sessions_stopping == ["ses_1", "ses_2"]


async def test_an_active_agents_sessions_are_left_alone() -> None:
    units, stopper = store_with_sessions(), Stopper()

    outcome = await KillSwitch(units, stopper, Commands(set())).stop_suspended_sessions(
        actor="watch"
    )

    assert (outcome.sessions_stopping, stopper.stopped, actions(units)) == ([], [], [])


async def test_the_pause_is_off_until_set_and_audited_both_ways() -> None:
    units = FakeStore()
    switch = KillSwitch(units, Stopper(), Commands(set()))

    before = await switch.pause_status()
    paused = await switch.set_pause(on=True, reason="incident", actor="op")
    during = await switch.pause_status()
    await switch.set_pause(on=False, reason="", actor="op")

    assert before["paused"] is False and before["actor"] is None
    assert (paused["paused"], paused["reason"], during["paused"]) == (True, "incident", True)
    assert (await switch.pause_status())["paused"] is False
    assert actions(units) == ["operator.paused", "operator.resumed"]
