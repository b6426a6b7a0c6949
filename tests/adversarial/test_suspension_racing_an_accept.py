"""A suspension that lands while an accept is waiting on Stripe: no hold stays open and
the charge point does not charge for the suspended agent."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import stripe

from tests.adversarial.stripe_switch import StripeSwitch
from tests.e2e.conftest import World, battery, credential


def intents_of(client: stripe.StripeClient, agent_id: str) -> list[dict[str, Any]]:
    intents = [i.to_dict() for i in client.v1.payment_intents.list({"limit": 100}).data]
    return [i for i in intents if i["metadata"].get("agent_id") == agent_id]


async def sessions_of(world: World) -> list[dict[str, Any]]:
    response = await world.admin.get("/v1/admin/sessions", params={"agent_id": world.agent_id})
    doc = response.json()
    return list(doc if isinstance(doc, list) else doc.get("sessions", doc.get("items", [])))


async def test_a_suspension_during_the_hold_request_leaves_no_hold_open(
    make_world: Callable[..., Any], stripe_url: str, stripe_client: stripe.StripeClient
) -> None:
    switch = StripeSwitch(stripe_url)
    async with switch.running(), make_world(stripe_api_base=switch.url) as world:
        cp = await world.charge_point("ocpp2.0.1")
        async with cp:
            await asyncio.wait_for(cp.booted.wait(), 10)
            plug = cp.plug_in(1, battery("5"))
            negotiation = await world.negotiate(cp, "5")
            challenge = await world.challenge(negotiation, "5.00")
            switch.delay_s = 1.5  # the hold request is slow to reach Stripe

            accepting = asyncio.create_task(
                world.accept(negotiation, "5.00", credential(challenge))
            )
            async with asyncio.timeout(5):
                while True:
                    if await sessions_of(world):
                        break
                    await asyncio.sleep(0.02)
            suspended = await world.admin.post(
                f"/v1/admin/agents/{world.agent_id}/suspend", json={"reason": "stolen car"}
            )
            accepted = await accepting
            switch.delay_s = 0
            await asyncio.sleep(6)  # the kill switch's watcher and the reconciler had turns
            (session,) = await sessions_of(world)
            holds = intents_of(stripe_client, world.agent_id)

    assert suspended.status_code == 200, suspended.text
    assert (accepted.status_code, accepted.json()["code"]) == (403, "agent_suspended")
    assert [h["status"] for h in holds if h["status"] == "requires_capture"] == [], (
        accepted.status_code,
        session["status"],
        plug.energy_wh,
        [h["status"] for h in holds],
    )
    assert [h["status"] for h in holds] == ["canceled"]
    assert (session["status"], session["payment"]["status"]) == ("cancelled", "canceled")
    assert not plug.energy_wh
