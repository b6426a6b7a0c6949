"""A 1.6 charge point that sends no periodic meter values (MeterValueSampleInterval=0 is
common) reports the energy only in StopTransaction: the session must bill it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import stripe

from tests.adversarial.raw_charge_point import raw_charge_point
from tests.adversarial.test_metering_never_captures_past_the_cap import (
    final_state,
    paid_session,
    start,
    stop,
)
from tests.e2e.conftest import intent_in_stripe


async def test_a_long_charge_without_samples_is_billed_from_its_stop_transaction(
    make_world: Callable[..., Any], stripe_client: stripe.StripeClient
) -> None:
    # silence threshold = 6 × session_start_timeout_s = 3 s (an hour with the defaults)
    quick = {"session_start_timeout_s": 0.5, "reconcile_interval_s": 0.3}
    async with make_world(**quick) as world, raw_charge_point(world) as (cp_id, raw):
        session = await paid_session(world, cp_id, raw, "20.00")
        tx = (await start(raw, session["id_token"]))[2]["transactionId"]
        for _ in range(8):  # connected and heartbeating, just no samples
            await raw.send("Heartbeat", {})
            await asyncio.sleep(0.5)
        during = (await world.agent.get(f"/v1/sessions/{session['session_id']}")).json()

        ended = await raw.send("StopTransaction", stop(tx, 20_000))
        final = await final_state(world, session["session_id"])

    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert ended[0] == 3
    assert raw.stop_requested() or during["status"] == "charging", (during, raw.calls)
    assert final["energy_kwh"] == "20.000", final
    assert Decimal(final["captured"]) > 0
    assert in_stripe["status"] == "succeeded"
