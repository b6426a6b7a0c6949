"""kill -9 mid-transaction: the charge point queues, reconnects, and nothing stored is lost."""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal

import pytest
from sqlalchemy import select

from simulators.ports import free_port
from station.domain.events import ENERGY_REGISTER
from station.store.charging import MeterSampleRow, TransactionRow
from station.store.db import Database
from tests.ocpp.conftest import registered
from tests.ocpp.station_process import restartable_charge_point, station_process


@pytest.mark.parametrize(
    ("database_url", "version"),
    [("sqlite", "ocpp1.6"), pytest.param("postgres", "ocpp2.0.1", marks=pytest.mark.postgres)],
    indirect=["database_url"],
)
async def test_a_station_killed_mid_transaction_loses_no_acknowledged_reading(
    database_url: str, version: str
) -> None:
    await registered(database_url, ["CP-1"])
    http_port, ocpp_port = free_port(), free_port()
    sim, battery = restartable_charge_point(ocpp_port, version)

    async with station_process(database_url, http_port, ocpp_port) as first, sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        plug = sim.plug_in(1, battery, id_token="TAG-KILL")
        await asyncio.wait_for(plug.started.wait(), 5)
        await asyncio.sleep(0.6)  # some readings acknowledged, more on the way
        first.send_signal(signal.SIGKILL)
        await first.wait()
        await asyncio.sleep(0.5)  # the charge point meters on, offline
        queued_while_down = sim.pending
        async with station_process(database_url, http_port, ocpp_port):
            await asyncio.wait_for(plug.ended.wait(), 30)

    db = Database(database_url)
    try:
        async with db.reader() as session:
            row = await session.scalar(select(TransactionRow))
            assert row is not None
            values = set(
                (
                    await session.scalars(
                        select(MeterSampleRow.value).where(
                            MeterSampleRow.transaction_id == row.id,
                            MeterSampleRow.measurand == ENERGY_REGISTER,
                        )
                    )
                ).all()
            )
            ended, energy_wh = row.ended, row.energy_wh
    finally:
        await db.dispose()
    assert queued_while_down > 0
    assert sim.connections >= 2
    assert ended
    assert plug.meter_start_wh == 500 and plug.energy_wh is not None and plug.energy_wh > 0
    assert energy_wh == Decimal(plug.meter_stop_wh or 0) - Decimal(500)
    assert values == {Decimal(v) for v in plug.readings_wh}
