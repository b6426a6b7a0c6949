"""SetChargingProfile from the station reaches the simulator, which honours it at once."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import select

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from station.app import Station
from station.domain.cap import ChargingLimit
from station.store.charging import OcppMessageRow, TransactionRow
from tests.ocpp.conftest import PASSWORD

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_a_charging_limit_holds_the_power_then_ends_the_delivery(
    station: Station, ocpp_url: str, version: str
) -> None:
    sim = SimulatedChargePoint(
        ocpp_url, "CP-1", PASSWORD, version, time_scale=600, meter_interval_s=60,
        charger_max_kw=50,
    )  # fmt: skip
    battery = Battery(capacity_kwh=Decimal(80), soc=Decimal("0.1"))

    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        plug = sim.plug_in(1, battery, id_token="TAG")
        await asyncio.wait_for(plug.started.wait(), 5)
        while len(plug.readings_wh) < 3:  # noqa: ASYNC110 - a Begin and two samples
            await asyncio.sleep(0.01)
        async with station.db.reader() as session:
            tx = await session.scalar(select(TransactionRow))
            assert tx is not None
            ref = tx.transaction_ref
        assert sim.clock is not None
        now = sim.clock.now()
        # 6 kW for 2 simulated minutes from now, then nothing: at most 200 Wh more.
        limit = ChargingLimit(1, Decimal(6000), now, Decimal(120))
        station.connections.post_charging_limit("CP-1", ref, limit)
        while not plug.limits_w:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        at_limit = sim.meter_wh[1]
        await asyncio.sleep(1.0)  # 10 simulated minutes
        delivered = sim.meter_wh[1] - at_limit
        sim.stop(1)
        await asyncio.wait_for(plug.ended.wait(), 10)

    async with station.db.reader() as session:
        answers = (
            await session.scalars(
                select(OcppMessageRow.payload).where(
                    OcppMessageRow.direction == "in", OcppMessageRow.message_type == 3
                )
            )
        ).all()
    assert plug.limits_w == [Decimal(6000)]
    # The profile came while the charger ran at 50 kW: what passed before it arrived is
    # the latency (allowed: 30 simulated seconds, 50 ms), then at most 6 kW for what was
    # left of the two minutes, then 0 W for the other eight. Unlimited: 8.3 kWh.
    assert delivered <= 200 + 50_000 * 30 / 3600, delivered
    assert {"status": "Accepted"} in answers


async def test_on_ocpp21_no_charging_profile_is_sent(station: Station, ocpp_url: str) -> None:
    sim = SimulatedChargePoint(ocpp_url, "CP-1", PASSWORD, "ocpp2.1", time_scale=600)
    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        plug = sim.plug_in(1, Battery(capacity_kwh=Decimal(80), soc=Decimal("0.1")), id_token="T")
        await asyncio.wait_for(plug.started.wait(), 5)
        assert sim.clock is not None
        limit = ChargingLimit(1, Decimal(6000), sim.clock.now(), Decimal(120))
        station.connections.post_charging_limit("CP-1", str(plug.transaction_id), limit)
        await asyncio.sleep(0.3)
        sim.stop(1)
        await asyncio.wait_for(plug.ended.wait(), 10)

    assert plug.limits_w == []
