"""Many stops at once — the agent's, repeated, and the charge point's own end of the
transaction, twice — settle the session once, for what was metered."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import httpx
import stripe

from tests.adversarial.raw_charge_point import raw_charge_point
from tests.adversarial.test_metering_never_captures_past_the_cap import (
    final_state,
    meter,
    paid_session,
    start,
    stop,
)
from tests.e2e.conftest import World, intent_in_stripe


async def test_ten_agent_stops_racing_the_charge_points_end_capture_once(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    async with raw_charge_point(world) as (cp_id, raw):
        session = await paid_session(world, cp_id, raw, "20.00")
        sid = session["session_id"]
        tx = (await start(raw, session["id_token"]))[2]["transactionId"]
        await raw.send("MeterValues", meter(tx, "4000"))

        results = await asyncio.gather(
            *(world.agent.post(f"/v1/sessions/{sid}/stop") for _ in range(10)),
            raw.send("StopTransaction", stop(tx, 5000)),
            raw.send("StopTransaction", stop(tx, 5000)),
        )
        final = await final_state(world, sid)
        await asyncio.sleep(0.5)

    stops = [r for r in results if isinstance(r, httpx.Response)]
    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert {r.status_code for r in stops} == {202}
    assert final["status"] == "settled" and final["energy_kwh"] == "5.000"
    assert world.station.payments.stripe_calls().get("capture") == 1
    assert in_stripe == {
        "status": "succeeded",
        "amount": 2000,
        "captured": int(Decimal(final["captured"]) * 100),
    }
