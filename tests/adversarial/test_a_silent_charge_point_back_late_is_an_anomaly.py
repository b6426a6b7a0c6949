"""A charge point that really falls silent (gone from the network, no heartbeat) has its
session settled for what was metered; if it comes back and ends the transaction with more
energy, nothing is captured twice and the operator sees an ``unbilled_energy`` anomaly."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import stripe

from tests.adversarial.raw_charge_point import connected
from tests.adversarial.test_metering_never_captures_past_the_cap import (
    final_state,
    meter,
    paid_session,
    start,
    stop,
)
from tests.e2e.conftest import intent_in_stripe


async def test_a_late_stop_after_a_silence_settlement_is_an_anomaly_not_a_second_capture(
    make_world: Callable[..., Any], stripe_client: stripe.StripeClient
) -> None:
    # silence threshold = 6 × session_start_timeout_s = 3 s (an hour with the defaults)
    quick = {"session_start_timeout_s": 0.5, "reconcile_interval_s": 0.3}
    async with make_world(**quick) as world:
        cp = await world.charge_point("ocpp1.6")  # registers it; driven by hand below
        async with connected(world, cp.charge_point_id, cp.password) as raw:
            session = await paid_session(world, cp.charge_point_id, raw, "20.00")
            tx = (await start(raw, session["id_token"]))[2]["transactionId"]
            await raw.send("MeterValues", meter(tx, "2000"))
        # the charge point is gone: no connection, no heartbeat
        settled = await final_state(world, session["session_id"])
        async with connected(world, cp.charge_point_id, cp.password) as raw:
            ended = await raw.send("StopTransaction", stop(tx, 20_000))
        await asyncio.sleep(0.5)  # a settlement it might (wrongly) have queued had its turn
        after = (await world.agent.get(f"/v1/sessions/{session['session_id']}")).json()
        detail = (await world.admin.get(f"/v1/admin/sessions/{session['session_id']}")).json()

    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert (settled["status"], settled["stop_reason"]) == ("settled", "charge_point_silent")
    assert settled["energy_kwh"] == "2.000"
    assert ended[0] == 3
    assert (after["status"], after["captured"]) == ("settled", settled["captured"])
    assert in_stripe["status"] == "succeeded"
    assert in_stripe["captured"] == int(Decimal(settled["captured"]) * 100)
    assert [a["kind"] for a in detail["anomalies"]] == ["unbilled_energy"], detail["anomalies"]
    assert "18000" in detail["anomalies"][0]["detail"]
