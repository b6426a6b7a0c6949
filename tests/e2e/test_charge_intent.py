"""The registered `charge` intent end to end against localstripe: the cap is charged at
once, the unused part refunded at settlement (once, or not at all when nothing is unused),
and the receipts say so."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import mpp
import pytest
import stripe

from tests.e2e.conftest import SECRET, World, battery, intent_in_stripe, refunds_in_stripe
from tests.e2e.test_payment_flow import wait_for_status
from vehicle.money import Money
from vehicle.payer import parse_challenges
from vehicle.receipt import AgreedSession, verify_receipt
from vehicle.terms import Tariff


async def _session_paid_on_charge(
    world: World, cap: str, kwh: str
) -> tuple[dict[str, Any], dict[str, Any], Any]:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery(kwh))
        negotiation = await world.negotiate(cp, kwh)
        response = await world.pay(negotiation, cap, intent="charge")
        assert response.status_code == 201, response.text
        session = response.json()
        session["_receipt_header"] = response.headers.get("payment-receipt")
        session["_cache_control"] = response.headers.get("cache-control")
        await asyncio.wait_for(plug.ended.wait(), 20)
        settled = await wait_for_status(world, session["session_id"], "settled")
    return negotiation, session, settled


async def test_the_402_offers_authorize_and_charge(world: World) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        negotiation = await world.negotiate(cp, "5")
        response = await world.accept(negotiation, "5.00")

    offered = parse_challenges(response.headers["www-authenticate"])
    assert [(c.method, c.intent) for c in offered] == [
        ("stripe", "authorize"),
        ("stripe", "charge"),
    ]
    assert offered[0].request == offered[1].request  # the same request: cap, offer, networkId
    assert offered[1].request["methodDetails"]["networkId"] == world.station.settings.mpp_network_id
    assert offered[0].id != offered[1].id


async def test_a_charge_is_captured_at_once_and_the_unused_part_refunded_once(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    negotiation, session, settled = await _session_paid_on_charge(world, "10.00", "3")

    reference = session["payment"]["reference"]
    receipt_response = await world.agent.get(f"/v1/sessions/{session['session_id']}/receipt")
    receipt = receipt_response.json()
    charged = mpp.Receipt.from_payment_receipt(session["_receipt_header"])
    settled_receipt = mpp.Receipt.from_payment_receipt(receipt_response.headers["payment-receipt"])
    refunds = refunds_in_stripe(stripe_client, reference)
    captured = Decimal(receipt["captured"])
    refunded_minor = 1000 - int(captured * 100)

    assert session["payment"] == {
        "provider": "stripe", "reference": reference, "status": "succeeded", "intent": "charge",
    }  # fmt: skip
    assert (charged.reference, charged.external_id) == (reference, negotiation["offer"]["offer_id"])
    assert session["_cache_control"] == "private"
    assert 0 < captured < Decimal("10.00")
    assert refunds == [
        {"amount": refunded_minor, "metadata": {"session_id": session["session_id"]}}
    ]
    assert intent_in_stripe(stripe_client, reference) == {
        "status": "succeeded", "amount": 1000, "captured": int(captured * 100),
    }  # fmt: skip
    assert receipt["intent"] == "charge"
    assert (receipt["charged"], receipt["refunded"], receipt["released"]) == (
        "10.00",
        str(Decimal("10.00") - captured),
        "0.00",
    )
    assert sum(Decimal(line["amount"]) for line in receipt["cost_lines"]) == captured
    assert settled["captured"] == receipt["captured"]
    assert settled_receipt.extensions == {
        "intent": "charge", "chargedAmount": "1000", "refundedAmount": str(refunded_minor),
    }  # fmt: skip
    assert world.station.payments.stripe_calls() == {"authorize": 1, "refund": 1}
    # The agent's own check accepts it as a charge receipt, and only as one.
    key = (await world.agent.get("/v1/receipt-key")).json()["public_key"]
    agreed = AgreedSession(
        session["session_id"],
        Tariff.from_wire(negotiation["offer"]["tariff"]),
        Money.parse("10.00", "usd"),
        reference,
        negotiation["offer"]["offer_id"],
        intent="charge",
    )
    header = receipt_response.headers["payment-receipt"]
    verdict = verify_receipt(receipt, header, agreed, key)
    assert verdict.accepted, verdict.reasons
    as_hold = AgreedSession(
        agreed.session_id, agreed.tariff, agreed.cap, reference, agreed.offer_id
    )
    assert not verify_receipt(receipt, header, as_hold, key).accepted
    tampered = verify_receipt({**receipt, "refunded": "0.00"}, header, agreed)
    assert any("refunded" in reason for reason in tampered.reasons)


@pytest.mark.parametrize("offered", ["authorize", "charge"])
async def test_the_operator_chooses_the_intents_offered(make_world: Any, offered: str) -> None:
    async with make_world(mpp_intents=offered) as world:
        cp = await world.charge_point("ocpp2.0.1")
        async with cp:
            await asyncio.wait_for(cp.booted.wait(), 10)
            negotiation = await world.negotiate(cp, "5")
            response = await world.accept(negotiation, "5.00")
            (challenge,) = parse_challenges(response.headers["www-authenticate"])
            other = "charge" if offered == "authorize" else "authorize"
            forged = mpp.Challenge.create(
                secret_key=SECRET, realm=challenge.realm, method="stripe",
                intent=other, request=challenge.request, expires=challenge.expires,
            )  # fmt: skip
            refused = await world.accept(
                negotiation,
                "5.00",
                mpp.Credential(
                    forged.to_echo(), {"payment_method": "pm_card_visa"}
                ).to_authorization(),
            )
    assert challenge.intent == offered
    # Signed with the station's own secret: refused only because that intent is not offered.
    assert (refused.status_code, refused.json()["code"]) == (402, "invalid_credential")
    assert "intent" in refused.json()["detail"]
