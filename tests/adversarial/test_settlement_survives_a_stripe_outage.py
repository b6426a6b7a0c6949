"""Stripe unreachable at capture time: the settlement stays pending with the hold open,
and completes exactly once when Stripe is back — on one node, or on two racing nodes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
import stripe
from sqlalchemy import select

from station.app import running_station
from station.store.audit import AuditRow
from station.store.payments import SettlementRow
from tests.adversarial.stripe_switch import StripeSwitch
from tests.e2e.conftest import World, battery, intent_in_stripe, settings_for

FAST = {"stripe_timeout_s": 1, "reconcile_interval_s": 0.3}


async def until(predicate: Callable[[], Any], timeout_s: float = 20) -> Any:
    async with asyncio.timeout(timeout_s):
        while True:
            if result := await predicate():
                return result
            await asyncio.sleep(0.05)


async def session_doc(world: World, session_id: str) -> dict[str, Any]:
    return dict((await world.agent.get(f"/v1/sessions/{session_id}")).json())


async def charging_session(world: World, cp: Any) -> dict[str, Any]:
    """A 1.6 session that has metered some energy."""
    await asyncio.wait_for(cp.booted.wait(), 10)
    cp.plug_in(1, battery("40"))
    negotiation = await world.negotiate(cp, "40")
    response = await world.pay(negotiation, "20.00")
    assert response.status_code == 201, response.text
    session_id = response.json()["session_id"]

    async def metered() -> bool:
        doc = await session_doc(world, session_id)
        return doc["status"] == "charging" and Decimal(doc["energy_kwh"]) > 0

    await until(metered)
    return await session_doc(world, session_id)


async def pending_settlement(world: World, session_id: str) -> SettlementRow | None:
    async with world.station.db.reader() as session:
        row = await session.get(SettlementRow, session_id)
        if row is None or row.attempts < 1:
            return None
        session.expunge_all()
        return row


async def test_a_capture_during_an_outage_stays_pending_then_settles_once(
    make_world: Callable[..., Any], stripe_url: str, stripe_client: stripe.StripeClient
) -> None:
    switch = StripeSwitch(stripe_url)
    async with switch.running(), make_world(stripe_api_base=switch.url, **FAST) as world:
        cp = await world.charge_point("ocpp1.6")
        async with cp:
            session = await charging_session(world, cp)
            sid, reference = session["session_id"], session["payment"]["reference"]

            switch.down()
            await world.agent.post(f"/v1/sessions/{sid}/stop")
            deferred = await until(lambda: pending_settlement(world, sid))
            during = await session_doc(world, sid)
            in_stripe_during = intent_in_stripe(stripe_client, reference)
            receipt_during = await world.agent.get(f"/v1/sessions/{sid}/receipt")
            switch.up()

            async def settled() -> dict[str, Any] | None:
                doc = await session_doc(world, sid)
                return doc if doc["status"] == "settled" else None

            final = await until(settled)

    in_stripe = intent_in_stripe(stripe_client, reference)
    assert switch.refused >= 1
    assert deferred.state == "pending" and deferred.action == "capture"
    assert during["status"] == "stopping" and during["captured"] is None
    assert in_stripe_during == {"status": "requires_capture", "amount": 2000, "captured": 0}
    assert receipt_during.status_code == 409
    assert Decimal(final["captured"]) == deferred.amount > 0
    assert in_stripe == {
        "status": "succeeded",
        "amount": 2000,
        "captured": int(deferred.amount * 100),
    }


@pytest.mark.parametrize("database_url", ["postgres"], indirect=True)
async def test_two_nodes_reconciling_one_pending_settlement_capture_it_once(
    make_world: Callable[..., Any],
    database_url: str,
    stripe_url: str,
    stripe_client: stripe.StripeClient,
) -> None:
    switch = StripeSwitch(stripe_url)
    quiet = {"stripe_timeout_s": 1, "reconcile_interval_s": 3600}
    async with switch.running(), make_world(stripe_api_base=switch.url, **quiet) as world:
        cp = await world.charge_point("ocpp1.6")
        async with cp:
            session = await charging_session(world, cp)
            sid, reference = session["session_id"], session["payment"]["reference"]
            switch.down()
            await world.agent.post(f"/v1/sessions/{sid}/stop")
            deferred = await until(lambda: pending_settlement(world, sid))
            second = settings_for(
                database_url, stripe_url, stripe_api_base=switch.url, node_id="node-2", **quiet
            )
            async with running_station(second) as node_2:
                switch.up()
                await asyncio.sleep(2.2)  # past the lease (2 × stripe_timeout_s)

                acted = await asyncio.gather(
                    world.station.payments.settlement.reconcile(),
                    node_2.payments.settlement.reconcile(),
                    world.station.payments.settlement.reconcile(),
                    node_2.payments.settlement.reconcile(),
                )
                final = await session_doc(world, sid)
                async with world.station.db.reader() as db:
                    captures = (
                        await db.scalars(
                            select(AuditRow.action).where(
                                AuditRow.subject == sid,
                                AuditRow.action == "settlement.captured",
                            )
                        )
                    ).all()
                    done = await db.get(SettlementRow, sid)
                    assert done is not None
                    done_state = done.state

    in_stripe = intent_in_stripe(stripe_client, reference)
    assert sum(acted) >= 1
    assert final["status"] == "settled"
    assert Decimal(final["captured"]) == deferred.amount
    assert len(captures) == 1 and done_state == "done"
    assert in_stripe == {
        "status": "succeeded",
        "amount": 2000,
        "captured": int(deferred.amount * 100),
    }
