"""One agent cannot watch, counter, accept, pay with or settle another agent's negotiation
or session — not through the event stream, nor with the other's payment credential."""

from __future__ import annotations

import asyncio

import stripe

from tests.e2e.conftest import World, battery, credential
from tests.trust.test_trust_e2e import second_agent


async def test_a_stranger_gets_404_everywhere_and_cannot_spend_the_owners_credential(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    cp = await world.charge_point("ocpp2.0.1", evse_count=2)
    async with cp, await second_agent(world) as stranger:
        await asyncio.wait_for(cp.booted.wait(), 10)
        cp.plug_in(1, battery("5"))
        cp.plug_in(2, battery("5"))
        negotiation = await world.negotiate(cp, "5")
        nid, offer_id = negotiation["negotiation_id"], negotiation["offer"]["offer_id"]
        owners_challenge = await world.challenge(negotiation, "5.00")
        own_negotiation = (
            await stranger.post(
                "/v1/negotiations",
                json={"charge_point_id": cp.charge_point_id, "evse_id": 2, "energy_kwh": "5"},
            )
        ).json()

        countered = await stranger.post(
            f"/v1/negotiations/{nid}/counter", json={"energy_price_per_kwh": "0.01"}
        )
        accepted = await stranger.post(
            f"/v1/negotiations/{nid}/accept",
            json={"offer_id": offer_id, "cap": "5.00"},
            headers={"Authorization": credential(owners_challenge)},
        )
        # the owner's credential on the stranger's own negotiation (same amount)
        borrowed = await stranger.post(
            f"/v1/negotiations/{own_negotiation['negotiation_id']}/accept",
            json={"offer_id": own_negotiation["offer"]["offer_id"], "cap": "5.00"},
            headers={"Authorization": credential(owners_challenge)},
        )
        paid = await world.accept(negotiation, "5.00", credential(owners_challenge))
        session_id = paid.json()["session_id"]
        events = await stranger.get(f"/v1/sessions/{session_id}/events")
        unknown_events = await world.agent.get("/v1/sessions/ses_doesnotexist/events")
        await world.agent.post(f"/v1/sessions/{session_id}/stop")

    intents = [i.to_dict() for i in stripe_client.v1.payment_intents.list({"limit": 100}).data]
    stranger_holds = [i for i in intents if i["metadata"].get("agent_id") != world.agent_id]
    owner_holds = [i for i in intents if i["metadata"].get("session_id") == session_id]
    assert (countered.status_code, countered.json()["code"]) == (404, "not_found")
    assert (accepted.status_code, accepted.json()["code"]) == (404, "not_found")
    assert borrowed.status_code == 402 and borrowed.json()["code"] == "invalid_credential"
    assert paid.status_code == 201, paid.text
    assert (events.status_code, events.json()["code"]) == (404, "not_found")
    assert (unknown_events.status_code, unknown_events.json()["code"]) == (404, "not_found")
    assert len(owner_holds) == 1
    assert [i for i in stranger_holds if i["metadata"].get("offer_id") in (offer_id,)] == []
