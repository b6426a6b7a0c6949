"""An agent that stops right after its accept (before the charge point reports the start):
the charge point must not go on charging for free."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import stripe

from tests.adversarial.raw_charge_point import raw_charge_point
from tests.adversarial.test_metering_never_captures_past_the_cap import meter, paid_session, start
from tests.e2e.conftest import World, battery, intent_in_stripe


async def final_state(world: World, session_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            doc: dict[str, Any] = (await world.agent.get(f"/v1/sessions/{session_id}")).json()
            if doc["status"] in ("settled", "cancelled", "failed"):
                return doc
            await asyncio.sleep(0.05)


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_stop_right_after_the_accept_stops_the_charge_point_or_bills_it(
    world: World, version: str, stripe_client: stripe.StripeClient
) -> None:
    cp = await world.charge_point(version)
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("10"))
        negotiation = await world.negotiate(cp, "10")
        paid = await world.pay(negotiation, "10.00")
        assert paid.status_code == 201, paid.text
        session_id = paid.json()["session_id"]

        stopped = await world.agent.post(f"/v1/sessions/{session_id}/stop")
        final = await final_state(world, session_id)
        await asyncio.sleep(1.5)  # 15 simulated minutes at 50 kW

    in_stripe = intent_in_stripe(stripe_client, paid.json()["payment"]["reference"])
    delivered_wh = plug.energy_wh or 0
    billed_wh = int(float(final["energy_kwh"]) * 1000)
    assert stopped.status_code == 202
    assert in_stripe["status"] != "requires_capture"
    assert delivered_wh <= billed_wh + 1000, (delivered_wh, final)


async def test_a_start_reported_after_the_agent_stopped_is_refused_or_stopped(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    async with raw_charge_point(world) as (cp_id, raw):
        session = await paid_session(world, cp_id, raw, "10.00")
        stopped = await world.agent.post(f"/v1/sessions/{session['session_id']}/stop")
        started = await start(raw, session["id_token"])
        tx = started[2]["transactionId"]
        metered = await raw.send("MeterValues", meter(tx, "20000"))
        await asyncio.sleep(0.5)
        doc = (await world.agent.get(f"/v1/sessions/{session['session_id']}")).json()

    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    refused = started[2]["idTagInfo"]["status"] != "Accepted"
    assert stopped.status_code == 202 and metered[0] == 3
    assert refused or raw.stop_requested(), (started, raw.calls, doc)
    assert in_stripe["status"] == "canceled"
