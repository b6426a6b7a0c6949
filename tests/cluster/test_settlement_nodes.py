"""Settlement and the reconciler with several nodes on one PostgreSQL (issue 11 item 4).

Each node is its own `SettlementService` on its own engine (its own connections,
as separate processes have); one Stripe (a shared fake gateway) behind them.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest

from station.payments.fake_gateway import FakeGateway
from station.services.session_events import SessionEvents
from station.services.settlement import SettlementService
from station.settings import Settings
from station.store.db import Database
from station.store.payments import SessionRow
from tests.payments.test_settlement import T0, Clock, new_session, stored

pytestmark = pytest.mark.postgres


@pytest.fixture
async def two_databases(pg_url: str) -> AsyncIterator[tuple[Database, Database]]:
    a, b = Database(pg_url), Database(pg_url)
    try:
        yield a, b
    finally:
        await a.dispose()
        await b.dispose()


class ClusterView:
    """The command port as a node of several sees it: connected anywhere, held here or not."""

    def __init__(self, here: bool) -> None:
        self.here = here
        self.stops: list[tuple[str, str]] = []

    def is_connected(self, charge_point_id: str) -> bool:
        return True  # to one node or another

    def is_connected_here(self, charge_point_id: str) -> bool:
        return self.here

    def post_stop_transaction(self, charge_point_id: str, transaction_ref: str) -> None:
        self.stops.append((charge_point_id, transaction_ref))


def _node(db: Database, name: str, gateway: FakeGateway, clock: Clock, view: object = None) -> Any:
    settings = Settings(
        database_url=db.url, node_id=name, session_start_timeout_s=60, session_stop_timeout_s=300
    )
    return SettlementService(db, settings, gateway, SessionEvents(), clock, view)  # type: ignore[arg-type]


async def test_every_node_settling_and_reconciling_one_session_captures_once(
    two_databases: tuple[Database, Database],
) -> None:
    a_db, b_db = two_databases
    gateway, clock = FakeGateway(), Clock()
    a, b = _node(a_db, "node-a", gateway, clock), _node(b_db, "node-b", gateway, clock)
    session_id = await new_session(a_db, gateway)
    clock.now = T0 + timedelta(hours=1)  # long ended: each reconciler would settle it

    await asyncio.gather(
        *(node.settle(session_id) for node in (a, b, a, b)), a.reconcile(), b.reconcile()
    )

    row, done = await stored(a_db, session_id)
    assert gateway.calls["capture"] == 1
    assert (row.status, row.captured) == ("settled", Decimal("5.00"))
    assert done is not None and done.state == "done"


async def test_a_stop_that_failed_is_repeated_by_the_node_holding_the_charge_point_only(
    two_databases: tuple[Database, Database],
) -> None:
    a_db, b_db = two_databases
    gateway, clock = FakeGateway(), Clock()
    on_a, on_b = ClusterView(here=True), ClusterView(here=False)
    a = _node(a_db, "node-a", gateway, clock, on_a)
    b = _node(b_db, "node-b", gateway, clock, on_b)
    session_id = await new_session(a_db, gateway, status="stopping")
    async with a_db.session() as session:
        row = await session.get(SessionRow, session_id)
        assert row is not None
        row.stopped_at = None  # told to stop; the stop did not arrive
        row.stop_requested_at = T0

    for _ in range(2):
        await asyncio.gather(a.reconcile(), b.reconcile())
        clock.now += timedelta(seconds=1)

    assert on_a.stops == [("CP-1", "tx-1")] * 2
    assert on_b.stops == []  # B does not send its own copy of every repeat
    row_after, _ = await stored(a_db, session_id)
    assert row_after.status == "stopping"


async def test_the_cap_stop_of_the_metering_node_follows_a_stop_asked_on_another_node(
    two_databases: tuple[Database, Database],
) -> None:
    from station.services.billing import BillingListener
    from tests.payments.test_billing import FakeCommands, InUnit, running_writer, view

    a_db, b_db = two_databases
    gateway, clock = FakeGateway(), Clock()
    session_id = await new_session(a_db, gateway, status="charging", energy_wh="0")
    async with a_db.session() as session:
        row = await session.get(SessionRow, session_id)
        assert row is not None
        row.cap, row.transaction_ref, row.stopped_at, row.id_token = (
            Decimal("5.00"), "7", None, "TOKEN0123456789ABCDE",
        )  # fmt: skip
    on_a = FakeCommands()
    settlement = _node(a_db, "node-a", gateway, clock)
    listener = BillingListener(a_db, SessionEvents(), settlement, on_a, clock)  # type: ignore[arg-type]
    async with running_writer(a_db) as writer:
        billing = InUnit(listener, writer)
        await billing.transaction_updated(view("4000", 5, "48000"))
        async with b_db.session() as session:  # the agent's stop, through node B, never came
            row = await session.get(SessionRow, session_id)
            assert row is not None
            row.status, row.stop_reason, row.stop_requested_at = "stopping", "agent", clock.now

        await billing.transaction_updated(view("12000", 15, "48000"))  # past the cap, on A

    assert on_a.stops == ["7"]  # A tells the charge point to stop, the agent's stop or not
