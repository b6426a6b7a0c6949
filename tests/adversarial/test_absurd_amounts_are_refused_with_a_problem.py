"""Absurd amounts in negotiation and accept bodies: a problem+json 4xx with a stable code,
never a 5xx, and never a hold.

(Non-ASCII digits are left out: "١٢٣" is taken as 123 today; see the review report.)"""

from __future__ import annotations

import asyncio
from typing import Any

import stripe

from tests.e2e.conftest import World, battery

ABSURD = [
    "-1",
    "0",
    "NaN",
    "nan",
    "Infinity",
    "-Infinity",
    "1e400",
    "1E2",
    "0x10",
    "1_000",
    " ",
    "",
    "12.3.4",
    "1" * 33,
    "9" * 30 + ".0",  # past the decimal context (28 digits), inside max_length
    "1" * 32,
    "0." + "0" * 29 + "1",
    "100001",
]
NOT_STRINGS: list[Any] = [12, 12.5, None, True, [], {}, {"amount": "1"}]


def refusal(response: Any) -> tuple[int, str]:
    assert response.headers["content-type"] == "application/problem+json", response.text
    return response.status_code, response.json()["code"]


async def test_absurd_counter_prices_and_energies_are_422_validation_errors(world: World) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        negotiation = await world.negotiate(cp, "5")
        nid = negotiation["negotiation_id"]
        seen: dict[str, tuple[int, str]] = {}
        for value in [*ABSURD, *NOT_STRINGS]:
            for field in ("energy_price_per_kwh", "max_power_kw"):
                response = await world.agent.post(
                    f"/v1/negotiations/{nid}/counter", json={field: value}
                )
                if value is not None:
                    seen[f"counter {field}={value!r}"] = refusal(response)
            opened = await world.agent.post(
                "/v1/negotiations",
                json={"charge_point_id": cp.charge_point_id, "energy_kwh": value},
            )
            seen[f"open energy_kwh={value!r}"] = refusal(opened)
        after = await world.agent.get(f"/v1/negotiations/{nid}")

    wrong = {k: v for k, v in seen.items() if v != (422, "validation_error")}
    assert wrong == {}
    assert after.status_code in (200, 404, 405)


async def test_absurd_caps_are_refused_before_any_hold(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        cp.plug_in(1, battery("5"))
        negotiation = await world.negotiate(cp, "5")
        seen = {
            repr(cap): refusal(await world.accept(negotiation, cap))
            for cap in [*ABSURD, "5.001", "0.00", "-5.00", "1000000.01", *NOT_STRINGS]
        }

    intents = stripe_client.v1.payment_intents.list({"limit": 100}).data
    ours = [i for i in intents if i.to_dict()["metadata"].get("agent_id") == world.agent_id]
    allowed = {
        (422, "validation_error"),
        (422, "cap_too_low"),
        (403, "amount_exceeded"),
    }
    assert {k: v for k, v in seen.items() if v not in allowed} == {}
    assert seen["'0'"] == seen["'-1'"] == seen["'0.00'"] == (422, "cap_too_low")
    assert seen["'100001'"] == (403, "amount_exceeded")
    assert ours == []
