"""A charge point that reports absurd, repeated or late meter data never makes the station
capture more than the hold, capture twice, or bill a transaction that is not the session's."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import stripe

from tests.adversarial.raw_charge_point import RawChargePoint16, raw_charge_point
from tests.e2e.conftest import World, intent_in_stripe

T0 = "2026-11-22T10:00:00Z"


async def final_state(world: World, session_id: str) -> dict[str, Any]:
    async with asyncio.timeout(20):
        while True:
            doc: dict[str, Any] = (await world.agent.get(f"/v1/sessions/{session_id}")).json()
            if doc["status"] in ("settled", "cancelled", "failed"):
                return doc
            await asyncio.sleep(0.05)


async def paid_session(world: World, cp_id: str, raw: RawChargePoint16, cap: str) -> dict[str, Any]:
    response = await world.agent.post(
        "/v1/negotiations", json={"charge_point_id": cp_id, "evse_id": 1, "energy_kwh": "10"}
    )
    paid = await world.pay(response.json(), cap)
    assert paid.status_code == 201, paid.text
    await asyncio.wait_for(raw.remote_start.wait(), 5)
    return dict(paid.json())


async def start(raw: RawChargePoint16, id_tag: str, connector: int = 1) -> list[Any]:
    return await raw.send(
        "StartTransaction",
        {"connectorId": connector, "idTag": id_tag, "meterStart": 0, "timestamp": T0},
    )


def meter(
    transaction_id: int, value: str, unit: str = "Wh", at: str = "10:01:00"
) -> dict[str, Any]:
    return {
        "connectorId": 1,
        "transactionId": transaction_id,
        "meterValue": [
            {
                "timestamp": f"2026-11-22T{at}Z",
                "sampledValue": [
                    {"value": value, "unit": unit, "measurand": "Energy.Active.Import.Register"}
                ],
            }
        ],
    }


def stop(transaction_id: int, meter_stop: int, at: str = "10:02:00") -> dict[str, Any]:
    return {
        "transactionId": transaction_id,
        "meterStop": meter_stop,
        "timestamp": f"2026-11-22T{at}Z",
        "reason": "Local",
    }


async def test_a_gigawatt_hour_meter_jump_captures_exactly_the_cap(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    async with raw_charge_point(world) as (cp_id, raw):
        session = await paid_session(world, cp_id, raw, "7.00")
        started = await start(raw, session["id_token"])
        tx = started[2]["transactionId"]

        jumped = await raw.send("MeterValues", meter(tx, "999999999999"))
        await asyncio.sleep(0.3)  # the cap stop is posted from the connection's task
        ended = await raw.send("StopTransaction", stop(tx, 999_999_999_999))
        final = await final_state(world, session["session_id"])

    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert started[2]["idTagInfo"]["status"] == "Accepted"
    assert jumped[0] == 3 and ended[0] == 3
    assert raw.stop_requested()
    assert final["status"] == "settled"
    assert Decimal(final["captured"]) == Decimal("7.00")
    assert in_stripe == {"status": "succeeded", "amount": 700, "captured": 700}


async def test_a_repeated_stop_and_late_readings_change_nothing_after_settlement(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    async with raw_charge_point(world) as (cp_id, raw):
        session = await paid_session(world, cp_id, raw, "20.00")
        tx = (await start(raw, session["id_token"]))[2]["transactionId"]
        await raw.send("MeterValues", meter(tx, "2000"))
        await raw.send("StopTransaction", stop(tx, 3000))
        first = await final_state(world, session["session_id"])

        late = await raw.send("MeterValues", meter(tx, "50000", at="10:03:00"))
        again = await raw.send("StopTransaction", stop(tx, 90_000, at="10:04:00"))
        await asyncio.sleep(0.5)
        after = (await world.agent.get(f"/v1/sessions/{session['session_id']}")).json()
        receipt = (await world.agent.get(f"/v1/sessions/{session['session_id']}/receipt")).json()

    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert late[0] == 3 and again[0] == 3
    assert first["status"] == after["status"] == "settled"
    assert after["captured"] == first["captured"] and after["energy_kwh"] == "3.000"
    assert receipt["energy_kwh"] == "3.000" and receipt["captured"] == first["captured"]
    assert in_stripe["captured"] == int(Decimal(first["captured"]) * 100)
    assert world.station.payments.stripe_calls()["capture"] == 1


async def test_a_sessions_token_is_refused_on_another_charge_point_and_a_second_transaction(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    async with raw_charge_point(world) as (cp_id, raw), raw_charge_point(world) as (_, thief):
        session = await paid_session(world, cp_id, raw, "20.00")
        elsewhere = await start(thief, session["id_token"])
        own = await start(raw, session["id_token"])
        second = await start(raw, session["id_token"], connector=2)
        tx, tx2 = own[2]["transactionId"], second[2]["transactionId"]
        await raw.send("MeterValues", meter(tx, "1000"))
        await thief.send("MeterValues", meter(elsewhere[2]["transactionId"], "40000"))
        await raw.send("MeterValues", {**meter(tx2, "40000"), "connectorId": 2})
        await thief.send("StopTransaction", stop(elsewhere[2]["transactionId"], 40_000))
        await raw.send("StopTransaction", stop(tx2, 40_000))
        await asyncio.sleep(0.3)
        during = (await world.agent.get(f"/v1/sessions/{session['session_id']}")).json()
        await raw.send("StopTransaction", stop(tx, 1000))
        final = await final_state(world, session["session_id"])

    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert elsewhere[2]["idTagInfo"]["status"] == "Invalid"
    assert own[2]["idTagInfo"]["status"] == "Accepted"
    assert second[2]["idTagInfo"]["status"] == "Invalid"
    assert during["status"] == "charging" and during["energy_kwh"] == "1.000"
    assert final["status"] == "settled" and final["energy_kwh"] == "1.000"
    assert in_stripe["captured"] == int(Decimal(final["captured"]) * 100)


async def test_kwh_readings_with_many_decimals_are_billed_from_the_exact_energy(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    async with raw_charge_point(world) as (cp_id, raw):
        session = await paid_session(world, cp_id, raw, "20.00")
        tx = (await start(raw, session["id_token"]))[2]["transactionId"]
        await raw.send("MeterValues", meter(tx, "1.23456789", unit="kWh"))
        during = (await world.agent.get(f"/v1/sessions/{session['session_id']}")).json()
        await raw.send("StopTransaction", stop(tx, 1235))
        final = await final_state(world, session["session_id"])
        receipt = (await world.agent.get(f"/v1/sessions/{session['session_id']}/receipt")).json()

    tariff = session["tariff"]
    exact = (
        Decimal("1.235") * Decimal(tariff["energy_price_per_kwh"])
        + Decimal(tariff["session_fee"])
        + Decimal(tariff["time_price_per_hour"]) * Decimal(2) / Decimal(60)
    )
    in_stripe = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert during["energy_kwh"] == "1.235"
    assert final["energy_kwh"] == "1.235"
    assert Decimal(receipt["total"]) == exact.quantize(Decimal("0.01"), rounding="ROUND_HALF_UP")
    assert sum(Decimal(line["amount"]) for line in receipt["cost_lines"]) == Decimal(
        receipt["total"]
    )
    assert in_stripe["captured"] == int(Decimal(receipt["captured"]) * 100)
