"""One session end to end, per OCPP version, on both databases, against localstripe."""

from __future__ import annotations

import asyncio
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import mpp
import pytest
import stripe

from tests.e2e.conftest import World, battery, intent_in_stripe

VERSIONS = ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"]


async def wait_for_status(world: World, session_id: str, *final: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            response = await world.agent.get(f"/v1/sessions/{session_id}")
            doc: dict[str, Any] = response.json()
            if doc["status"] in final:
                return doc
            await asyncio.sleep(0.05)


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"), ROUND_HALF_UP)


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_plain_session_captures_the_cost_of_the_metered_energy(
    world: World, version: str, stripe_client: stripe.StripeClient
) -> None:
    cp = await world.charge_point(version)
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("8"))
        negotiation = await world.negotiate(cp, "8")

        response = await world.pay(negotiation, "10.00")
        assert response.status_code == 201, response.text
        session = response.json()
        await asyncio.wait_for(plug.ended.wait(), 20)
        settled = await wait_for_status(world, session["session_id"], "settled")

    receipt_response = await world.agent.get(f"/v1/sessions/{session['session_id']}/receipt")
    receipt = receipt_response.json()
    price = Decimal(negotiation["offer"]["tariff"]["energy_price_per_kwh"])
    kwh = Decimal(plug.energy_wh or 0) / 1000
    lines = {line["kind"]: Decimal(line["amount"]) for line in receipt["cost_lines"]}
    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert session["status"] in ("authorized", "charging") and len(session["id_token"]) <= 20
    assert receipt_response.status_code == 200
    mpp_receipt = mpp.Receipt.from_payment_receipt(receipt_response.headers["payment-receipt"])
    assert mpp_receipt.reference == session["payment"]["reference"]
    assert mpp_receipt.method == "stripe" and mpp_receipt.status == "success"
    # The capture receipt of draft-stripe-authorize-00, private to the agent (MPP core).
    captured_minor = str(int(Decimal(receipt["captured"]) * 100))
    assert mpp_receipt.external_id == negotiation["offer"]["offer_id"]
    assert mpp_receipt.extensions == {
        "intent": "authorize", "capturedAmount": captured_minor, "delta": captured_minor,
    }  # fmt: skip
    assert receipt_response.headers["cache-control"] == "private"
    assert lines["energy"] == cents(kwh * price)
    assert sum(lines.values()) == Decimal(receipt["total"]) == Decimal(receipt["captured"])
    assert in_stripe == {
        "status": "succeeded",
        "amount": 1000,
        "captured": int(Decimal(receipt["captured"]) * 100),
    }
    assert Decimal(receipt["released"]) == Decimal("10.00") - Decimal(receipt["captured"])
    assert settled["captured"] == receipt["captured"]
    assert world.station.payments.stripe_calls() == {"authorize": 1, "capture": 1}
    metrics = (await world.admin.get("/metrics")).text
    for status in ("authorized", "charging", "stopping", "settled"):
        assert f'chargepay_session_transitions_total{{status="{status}"}} 1.0' in metrics
    (timing,) = world.station.payments.authorisation.timings
    assert timing.started_s is not None and 0 < timing.authorised_s <= timing.started_s
    assert Decimal(receipt["energy_kwh"]) == kwh
    if receipt["meter_start_wh"] is not None:
        assert receipt["meter_stop_wh"] - receipt["meter_start_wh"] == plug.energy_wh
