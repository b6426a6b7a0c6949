"""SIGTERM mid-transaction: the station shuts down in order, exits 0, and loses nothing.

Also: a station run in-process (`running_station`) stops without cutting off
database work (SQLAlchemy's "Exception during reset" is the sign of that).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from simulators.ports import free_port
from station.app import running_station
from station.domain.events import ENERGY_REGISTER
from station.store.charging import ChargePointRow, MeterSampleRow, TransactionRow
from station.store.db import Database
from tests.ocpp.conftest import PASSWORD, registered, settings_for
from tests.ocpp.station_process import restartable_charge_point, station_process

CUT_OFF = ("Traceback", "Exception during reset", "CancelledError", "shutdown_overrun")


async def stored_readings(database_url: str) -> tuple[bool, Decimal | None, set[Decimal]]:
    db = Database(database_url)
    try:
        async with db.reader() as session:
            row = await session.scalar(select(TransactionRow))
            assert row is not None
            values = (
                await session.scalars(
                    select(MeterSampleRow.value).where(
                        MeterSampleRow.transaction_id == row.id,
                        MeterSampleRow.measurand == ENERGY_REGISTER,
                    )
                )
            ).all()
            return bool(row.ended), row.energy_wh, set(values)
    finally:
        await db.dispose()


@pytest.mark.parametrize(
    ("database_url", "version"),
    [("sqlite", "ocpp1.6"), pytest.param("postgres", "ocpp2.0.1", marks=pytest.mark.postgres)],
    indirect=["database_url"],
)
async def test_sigterm_mid_transaction_exits_0_within_seconds_and_loses_no_reading(
    database_url: str, version: str, tmp_path: Path
) -> None:
    await registered(database_url, ["CP-1"])
    http_port, ocpp_port = free_port(), free_port()
    sim, battery = restartable_charge_point(ocpp_port, version)
    log = tmp_path / "station.log"

    async with station_process(database_url, http_port, ocpp_port, log=log) as first, sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        plug = sim.plug_in(1, battery, id_token="TAG-TERM")
        await asyncio.wait_for(plug.started.wait(), 5)
        await asyncio.sleep(0.6)  # some readings acknowledged, more on the way
        first.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            exit_code = await first.wait()
        await asyncio.sleep(0.3)  # the charge point meters on, offline
        async with station_process(database_url, http_port, ocpp_port):
            await asyncio.wait_for(plug.ended.wait(), 30)
    ended, energy_wh, values = await stored_readings(database_url)

    output = await asyncio.to_thread(log.read_text)
    assert exit_code == 0, output
    assert "station.stopped" in output
    assert not [marker for marker in CUT_OFF if marker in output], output
    assert sim.connections >= 2
    assert ended
    assert plug.energy_wh is not None and plug.energy_wh > 0
    assert energy_wh == Decimal(plug.meter_stop_wh or 0) - Decimal(500)
    assert values == {Decimal(v) for v in plug.readings_wh}


async def test_a_running_station_stops_without_cutting_off_database_work(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    await registered(database_url, ["CP-1"])
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")

    # The reconciler all but always in a database pass: a cancelled shutdown cuts one off.
    settings = settings_for(database_url, reconcile_interval_s=0.001)

    async with running_station(settings) as station:
        sim = SimulatedChargePoint(
            f"ws://127.0.0.1:{station.ocpp_port}/ocpp",
            "CP-1",
            PASSWORD,
            "ocpp2.0.1",
            time_scale=200,
            meter_interval_s=30,
        )
        async with sim:
            await asyncio.wait_for(sim.booted.wait(), 10)
            plug = sim.plug_in(1, Battery(capacity_kwh=Decimal(6)), id_token="TAG")
            await asyncio.wait_for(plug.started.wait(), 5)
            await asyncio.sleep(0.3)
            stopping = asyncio.get_running_loop().time()
    stopped_s = asyncio.get_running_loop().time() - stopping

    db = Database(database_url)
    try:
        async with db.reader() as session:
            connected = await session.scalar(
                select(ChargePointRow.connected).where(ChargePointRow.charge_point_id == "CP-1")
            )
    finally:
        await db.dispose()

    messages = [r.getMessage() for r in caplog.records]
    assert stopped_s < 5
    assert connected is False  # the connection was closed and its end recorded, not cut off
    assert not [m for m in messages if "Exception during reset" in m], messages
    assert not [r for r in caplog.records if r.exc_info], messages
