"""Amounts are plain ASCII decimal strings (PROTOCOL: money as decimal strings)."""

from __future__ import annotations

import asyncio

from tests.e2e.conftest import World


async def test_an_amount_in_non_ascii_digits_is_a_422(world: World) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        negotiation = await world.negotiate(cp, "5")

        countered = await world.agent.post(
            f"/v1/negotiations/{negotiation['negotiation_id']}/counter",
            json={"energy_price_per_kwh": "١٢٣"},  # Arabic-Indic 123
        )

    assert countered.status_code == 422, countered.text
