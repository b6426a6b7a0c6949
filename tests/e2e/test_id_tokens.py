"""Only a paid session's id token charges; free vending is the operator's explicit choice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from tests.e2e.conftest import World, battery


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_tag_no_session_claims_is_refused_and_nothing_is_delivered(
    world: World, version: str
) -> None:
    cp = await world.charge_point(version)

    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 15)  # online: the tag is authorised first
        plug = cp.plug_in(1, battery("4"), id_token="STRANGER-TAG")
        await asyncio.wait_for(plug.ended.wait(), 15)

    assert plug.accepted is False
    assert plug.stop_reason == "DeAuthorized"
    assert not plug.energy_wh


async def test_with_free_vending_the_tag_charges_unpriced_and_nobody_is_charged(
    make_world: Callable[..., Any],
) -> None:
    async with make_world(ocpp_free_vend=True) as world:
        cp = await world.charge_point("ocpp2.0.1")
        async with cp:
            plug = cp.plug_in(1, battery("4"), id_token="DEPOT-CARD-7")
            await asyncio.wait_for(plug.ended.wait(), 15)
        sessions = await world.admin.get("/v1/admin/sessions")

    assert plug.accepted is not False
    assert plug.energy_wh and plug.energy_wh > 0
    assert sessions.status_code == 200
    assert sessions.json() == []
