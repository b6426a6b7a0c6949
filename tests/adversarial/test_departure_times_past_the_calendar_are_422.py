"""A departure time that is valid RFC 3339 but falls outside year 1–9999 once in UTC
gets a problem+json 422, never a 500."""

from __future__ import annotations

import asyncio

import pytest

from tests.e2e.conftest import World


@pytest.mark.parametrize("when", ["9999-12-31T23:59:59-14:00", "0001-01-01T00:00:00+14:00"])
async def test_a_departure_past_the_calendar_in_utc_is_a_422(world: World, when: str) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        negotiation = await world.negotiate(cp, "5")

        opened = await world.agent.post(
            "/v1/negotiations",
            json={"charge_point_id": cp.charge_point_id, "energy_kwh": "5", "departure_at": when},
        )
        countered = await world.agent.post(
            f"/v1/negotiations/{negotiation['negotiation_id']}/counter",
            json={"departure_at": when},
        )

    assert (opened.status_code, opened.json()["code"]) == (422, "validation_error"), opened.text
    assert (countered.status_code, countered.json()["code"]) == (422, "validation_error")
