"""A session has one owner of its next step until it is terminal: a stop that did not
reach the charge point is sent again (a second stop, a reconnect, every reconciler pass),
the cap holds while stopping, and a charge point that ignores stops is ended by the
station at a bounded time, with an ``unbilled_energy`` anomaly, and settled."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import stripe
from sqlalchemy import select

from station.store.charging import AnomalyRow
from tests.adversarial.test_settlement_survives_a_stripe_outage import (
    charging_session,
    session_doc,
    until,
)
from tests.e2e.conftest import World, battery, intent_in_stripe

NO_PASSES = {"reconcile_interval_s": 3600}  # only the start-up pass: nothing else re-stops


async def final(world: World, session_id: str, timeout_s: float = 20) -> dict[str, Any]:
    async def terminal() -> dict[str, Any] | None:
        doc = await session_doc(world, session_id)
        return doc if doc["status"] in {"settled", "cancelled", "failed"} else None

    return dict(await until(terminal, timeout_s))


async def charging(world: World, session_id: str) -> bool:
    return (await session_doc(world, session_id))["status"] == "charging"


async def disconnected(world: World, cp_id: str) -> bool:
    return not world.station.connections.is_connected(cp_id)


async def test_a_stop_sent_while_the_charge_point_was_away_is_sent_on_reconnect(
    make_world: Callable[..., Any],
) -> None:
    async with make_world(**NO_PASSES) as world:
        cp = await world.charge_point("ocpp1.6")
        async with cp:
            session = await charging_session(world, cp)
            sid = session["session_id"]
            cp.go_offline()
            await until(lambda: disconnected(world, cp.charge_point_id))

            first = await world.agent.post(f"/v1/sessions/{sid}/stop")
            second = await world.agent.post(f"/v1/sessions/{sid}/stop")
            during = await session_doc(world, sid)
            cp.go_online()
            ended = await final(world, sid)

    assert (first.status_code, second.status_code) == (503, 503)
    assert during["status"] == "stopping"
    assert ended["status"] == "settled"
    assert cp.stops_received >= 1


async def test_a_second_stop_is_sent_again_when_the_first_did_not_stop_the_charge(
    make_world: Callable[..., Any],
) -> None:
    async with make_world(**NO_PASSES) as world:
        cp = await world.charge_point("ocpp2.0.1", meter_interval_s=600)  # 1 s between readings
        async with cp:
            session = await charging_session(world, cp)
            sid = session["session_id"]
            cp.ignore_stops = 1  # the first stop is lost on the charge point's side

            first = await world.agent.post(f"/v1/sessions/{sid}/stop")
            after_first = cp.stops_received
            second = await world.agent.post(f"/v1/sessions/{sid}/stop")
            after_second = cp.stops_received
            ended = await final(world, sid)

    assert (first.status_code, second.status_code) == (202, 202)
    assert after_second > after_first >= 1  # the second stop itself reached the charge point
    assert ended["status"] == "settled"


async def test_a_stopping_session_that_passes_its_cap_is_stopped_again_at_once(
    make_world: Callable[..., Any], stripe_client: stripe.StripeClient
) -> None:
    async with make_world(**NO_PASSES) as world:
        cp = await world.charge_point("ocpp1.6")
        async with cp:
            await asyncio.wait_for(cp.booted.wait(), 10)
            cp.plug_in(1, battery("40"))
            negotiation = await world.negotiate(cp, "40")
            response = await world.pay(negotiation, "3.00")
            assert response.status_code == 201, response.text
            sid = response.json()["session_id"]
            await until(lambda: charging(world, sid))
            cp.ignore_stops = 1
            stop = await world.agent.post(f"/v1/sessions/{sid}/stop")  # lost: it charges on
            ended = await final(world, sid, timeout_s=30)

    hold = intent_in_stripe(stripe_client, ended["payment"]["reference"])
    assert stop.status_code == 202
    assert ended["status"] == "settled"
    assert Decimal(ended["captured"]) <= Decimal("3.00")
    assert hold["captured"] <= 300
    # Stopped at the cap (about 5 kWh at this tariff), not when the car was full (40 kWh).
    assert Decimal(ended["energy_kwh"]) < 8


async def test_the_reconciler_stops_again_however_often_the_meter_reports(
    make_world: Callable[..., Any],
) -> None:
    async with make_world(reconcile_interval_s=0.3) as world:
        cp = await world.charge_point("ocpp1.6", meter_interval_s=10)
        async with cp:
            session = await charging_session(world, cp)
            sid = session["session_id"]
            cp.ignore_stops = 2

            stop = await world.agent.post(f"/v1/sessions/{sid}/stop")
            ended = await final(world, sid)

    assert stop.status_code == 202
    assert cp.stops_received >= 3
    assert (ended["status"], ended["stop_reason"]) == ("settled", "agent_requested")


async def test_a_charge_point_that_ignores_stops_is_ended_by_the_station_in_bounded_time(
    make_world: Callable[..., Any], stripe_client: stripe.StripeClient
) -> None:
    async with make_world(reconcile_interval_s=0.3, session_stop_timeout_s=1.5) as world:
        cp = await world.charge_point("ocpp1.6")
        async with cp:
            session = await charging_session(world, cp)
            sid = session["session_id"]
            cp.ignore_stops = 10**6

            stop = await world.agent.post(f"/v1/sessions/{sid}/stop")
            ended = await final(world, sid)
            async with world.station.db.reader() as db:
                anomalies = (
                    await db.scalars(
                        select(AnomalyRow.detail).where(
                            AnomalyRow.charge_point_id == cp.charge_point_id,
                            AnomalyRow.kind == "unbilled_energy",
                        )
                    )
                ).all()

    hold = intent_in_stripe(stripe_client, ended["payment"]["reference"])
    assert stop.status_code == 202
    assert cp.stops_received >= 2
    assert (ended["status"], ended["stop_reason"]) == ("settled", "agent_requested")
    assert hold["status"] == "succeeded"
    assert hold["captured"] == int(Decimal(ended["captured"]) * 100) <= hold["amount"]
    assert len(anomalies) == 1 and sid in anomalies[0]
