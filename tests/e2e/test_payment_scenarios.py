"""Payment scenarios end to end (one OCPP version each, both databases, localstripe)."""

from __future__ import annotations

import asyncio
import base64
import json
from decimal import Decimal
from typing import Any

import mpp
import stripe

from simulators.battery import Battery
from tests.e2e.conftest import World, battery, credential, intent_in_stripe
from vehicle.payer import parse_challenge


async def settled_state(world: World, session_id: str, *final: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            doc: dict[str, Any] = (await world.agent.get(f"/v1/sessions/{session_id}")).json()
            if doc["status"] in final:
                return doc
            await asyncio.sleep(0.05)


async def test_a_counter_offer_session_is_billed_at_the_agreed_price(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("6"))
        negotiation = await world.negotiate(cp, "6")
        countered = await world.agent.post(
            f"/v1/negotiations/{negotiation['negotiation_id']}/counter",
            json={"energy_price_per_kwh": "0.40"},
        )
        agreed = countered.json()

        response = await world.pay(agreed, "8.00")
        assert response.status_code == 201, response.text
        session = response.json()
        events = await asyncio.wait_for(stream_events(world, session["session_id"]), 20)
        await asyncio.wait_for(plug.ended.wait(), 20)
        final = await settled_state(world, session["session_id"], "settled")

    receipt = (await world.agent.get(f"/v1/sessions/{session['session_id']}/receipt")).json()
    energy_line = next(line for line in receipt["cost_lines"] if line["kind"] == "energy")
    assert countered.status_code == 200 and agreed["status"] == "agreed"
    assert agreed["offer"]["tariff"]["energy_price_per_kwh"] == "0.4000"
    assert energy_line["unit_price"] == "0.4000"
    assert intent_in_stripe(stripe_client, session["payment"]["reference"])["captured"] == int(
        Decimal(final["captured"]) * 100
    )
    names = [name for name, _ in events]
    assert names[0] == "status" and names[-1] == "settled" and "meter" in names
    assert events[-1][1]["captured"] == final["captured"] and events[-1][1]["signature"]
    meters = [Decimal(data["energy_kwh"]) for name, data in events if name == "meter"]
    assert meters == sorted(meters)


async def stream_events(world: World, session_id: str) -> list[tuple[str, dict[str, Any]]]:
    """The session's Server-Sent Events until the final ``settled``."""
    events: list[tuple[str, dict[str, Any]]] = []
    name = ""
    async with world.agent.stream("GET", f"/v1/sessions/{session_id}/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


async def test_a_session_stops_at_the_cap_and_never_captures_more(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    cp = await world.charge_point("ocpp1.6")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("40"))
        negotiation = await world.negotiate(cp, "40")

        response = await world.pay(negotiation, "5.00")
        assert response.status_code == 201, response.text
        session = response.json()
        await asyncio.wait_for(plug.ended.wait(), 20)
        final = await settled_state(world, session["session_id"], "settled")

    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert final["stop_reason"] == "cap_reached"
    assert plug.stop_reason == "Remote" and (plug.energy_wh or 0) < 40_000
    assert Decimal(final["captured"]) <= Decimal("5.00")
    assert Decimal(final["captured"]) == Decimal(final["cost"])
    assert in_stripe["status"] == "succeeded"
    assert in_stripe["captured"] == int(Decimal(final["captured"]) * 100) <= 500


async def test_a_session_without_energy_releases_the_hold(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal(1)))
        negotiation = await world.negotiate(cp, "5")

        response = await world.pay(negotiation, "5.00")
        assert response.status_code == 201, response.text
        session = response.json()
        await asyncio.wait_for(plug.ended.wait(), 20)
        final = await settled_state(world, session["session_id"], "cancelled")

    receipt = await world.agent.get(f"/v1/sessions/{session['session_id']}/receipt")
    assert final["captured"] == "0.00"
    assert intent_in_stripe(stripe_client, session["payment"]["reference"]) == {
        "status": "canceled",
        "amount": 500,
        "captured": 0,
    }
    assert receipt.status_code == 409 and receipt.json()["code"] == "not_settled"


async def test_accept_refuses_declined_tampered_replayed_and_out_of_limit_payments(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    declined_card = stripe_client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4000000000000341", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    cp = await world.charge_point("ocpp2.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        cp.plug_in(1, battery("5"))
        negotiation = await world.negotiate(cp, "5")

        declined = await world.pay(negotiation, "5.00", payment_method=declined_card.id)
        tampered = await world.accept(
            negotiation, "5.00", _tampered(await world.challenge(negotiation, "5.00"))
        )
        too_low = await world.accept(negotiation, "0.10")
        too_high = await world.accept(negotiation, "500.00")
        challenge = await world.challenge(negotiation, "5.00")
        spare = await world.challenge(negotiation, "5.00")
        paid = await world.accept(negotiation, "5.00", credential(challenge))
        replayed = await world.accept(negotiation, "5.00", credential(challenge))
        other_cap = await world.accept(negotiation, "6.00", credential(spare))
        second = await world.accept(negotiation, "5.00", credential(spare))
        assert paid.status_code == 201, paid.text
        await world.agent.post(f"/v1/sessions/{paid.json()['session_id']}/stop")
        stopped = await settled_state(world, paid.json()["session_id"], "settled", "cancelled")

    assert (declined.status_code, declined.json()["code"]) == (402, "payment_declined")
    fresh = parse_challenge(declined.headers["www-authenticate"], ("authorize",))
    assert fresh.intent == "authorize" and fresh.request["amount"] == "500"
    for refused in (tampered, replayed, other_cap):
        assert (refused.status_code, refused.json()["code"]) == (402, "invalid_credential")
        assert "www-authenticate" in refused.headers
    assert (second.status_code, second.json()["code"]) == (409, "negotiation_closed")
    assert (too_low.status_code, too_low.json()["code"]) == (422, "cap_too_low")
    assert (too_high.status_code, too_high.json()["code"]) == (403, "amount_exceeded")
    assert paid.status_code == 201, paid.text
    intents = stripe_client.v1.payment_intents.list({"limit": 100}).data
    ours = [i for i in intents if i.to_dict()["metadata"].get("agent_id") == world.agent_id]
    assert len(ours) == 2  # the declined attempt and the one hold: nothing for the refusals
    assert {i.status for i in ours} == {"requires_payment_method", stopped["payment"]["status"]}


def _tampered(challenge: mpp.Challenge) -> str:
    """A credential whose echoed request asks for a smaller hold under the same id."""
    echo = challenge.to_echo()
    request = {**challenge.request, "amount": "100"}
    raw = json.dumps(request, separators=(",", ":"), sort_keys=True).encode()
    forged = base64.urlsafe_b64encode(raw).decode().rstrip("=")
    fields = {k: getattr(echo, k) for k in echo.__slots__}  # type: ignore[attr-defined]
    return mpp.Credential(
        challenge=type(echo)(**{**fields, "request": forged}),
        payload={"payment_method": "pm_card_visa"},
    ).to_authorization()


async def test_an_expired_challenge_is_refused(world_short_ttl: World) -> None:
    world = world_short_ttl
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        negotiation = await world.negotiate(cp, "5")
        challenge = await world.challenge(negotiation, "5.00")
        await asyncio.sleep(2.1)

        response = await world.accept(negotiation, "5.00", credential(challenge))

    assert (response.status_code, response.json()["code"]) == (402, "invalid_credential")
    assert "expired" in response.json()["detail"]
