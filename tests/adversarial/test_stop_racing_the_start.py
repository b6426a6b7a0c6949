"""An agent that stops right after its accept (before the charge point reports the start):
the charge point must not go on charging for free."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
import stripe

from tests.adversarial.raw_charge_point import raw_charge_point
from tests.adversarial.test_metering_never_captures_past_the_cap import (
    meter,
    paid_session,
    start,
    stop,
)
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


async def test_a_start_reported_after_the_agent_stopped_is_stopped_and_billed(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    """The charge point accepted the remote start; the agent stops before the station has
    heard of the transaction (its start was queued, or slow). The session is not cancelled
    meanwhile: the start, when it comes, is told to stop (or refused), and what the charge
    point metered is billed, up to the cap (issue 14: cancelled at 0 Wh, 11,999 Wh given
    away)."""
    async with raw_charge_point(world) as (cp_id, raw):
        session = await paid_session(world, cp_id, raw, "10.00")
        stopped = await world.agent.post(f"/v1/sessions/{session['session_id']}/stop")
        started = await start(raw, session["id_token"])
        tx = started[2]["transactionId"]
        metered = await raw.send("MeterValues", meter(tx, "2000"))
        ended = await raw.send("StopTransaction", stop(tx, 2000))
        final = await final_state(world, session["session_id"])

    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    refused = started[2]["idTagInfo"]["status"] != "Accepted"
    assert stopped.status_code == 202 and metered[0] == 3 and ended[0] == 3
    assert refused or raw.stop_requested(), (started, raw.calls, final)
    assert final["status"] == "settled" and final["energy_kwh"] == "2.000", final
    assert in_stripe["status"] == "succeeded", in_stripe
    assert 0 < in_stripe["captured"] == int(Decimal(final["captured"]) * 100) <= 1000


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_start_whose_link_is_lost_as_it_is_accepted_is_billed_not_cancelled(
    world: World, version: str, stripe_client: stripe.StripeClient
) -> None:
    """The charge point accepts the remote start and loses its link at once: its answer
    is lost (the station cannot know whether it started) and its start waits in its
    queue. The agent stops; the charge point charges offline and delivers its queue on
    reconnecting. The session must not have been cancelled at 0 Wh meanwhile (neither for
    the unanswered start nor for the stop): what it delivered is billed, up to the cap."""
    cp = await world.charge_point(version)
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("10"))
        remote_start = cp.remote_start

        def start_then_lose_the_link(*args: Any) -> bool:
            accepted = remote_start(*args)
            if accepted:  # after its answer is written, before the start is sent
                asyncio.get_running_loop().call_soon(cp.go_offline)
            return accepted

        cp.remote_start = start_then_lose_the_link  # type: ignore[method-assign]
        negotiation = await world.negotiate(cp, "10")
        paid = await world.pay(negotiation, "10.00")
        assert paid.status_code == 201, paid.text
        session_id = paid.json()["session_id"]
        await asyncio.wait_for(plug.started.wait(), 5)
        assert cp.pending >= 1  # the start waits in the queue

        stopped = await world.agent.post(f"/v1/sessions/{session_id}/stop")
        await asyncio.sleep(0.3)  # offline: 3 simulated minutes at 50 kW
        cp.go_online()
        final = await final_state(world, session_id)
        await asyncio.wait_for(plug.ended.wait(), 10)

    in_stripe = intent_in_stripe(stripe_client, paid.json()["payment"]["reference"])
    delivered_wh = plug.energy_wh or 0
    billed_wh = int(float(final["energy_kwh"]) * 1000)
    assert stopped.status_code == 202
    assert delivered_wh > 1000, plug  # it did charge offline
    assert final["status"] == "settled", final
    assert in_stripe["status"] == "succeeded", in_stripe
    assert in_stripe["captured"] == int(Decimal(final["captured"]) * 100)
    assert delivered_wh <= billed_wh + 1000, (delivered_wh, final)


async def test_a_stop_before_a_start_that_never_comes_releases_the_hold_at_the_start_timeout(
    make_world: Any, stripe_client: stripe.StripeClient
) -> None:
    """Stopped before its start was reported, a session waits for the start; when none
    comes within the start timeout (counted while the charge point is connected), it is
    cancelled and its hold released: never left stopping with the hold open."""
    async with (
        make_world(session_start_timeout_s=1, reconcile_interval_s=0.2) as world,
        raw_charge_point(world) as (cp_id, raw),
    ):
        session = await paid_session(world, cp_id, raw, "10.00")
        stopped = await world.agent.post(f"/v1/sessions/{session['session_id']}/stop")
        waiting = (await world.agent.get(f"/v1/sessions/{session['session_id']}")).json()
        final = await final_state(world, session["session_id"])

    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert stopped.status_code == 202 and waiting["status"] == "stopping", waiting
    assert final["status"] == "cancelled", final
    assert in_stripe["status"] == "canceled", in_stripe
