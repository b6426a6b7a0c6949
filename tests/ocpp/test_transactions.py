"""A simulated charge point of each OCPP version charges and the energy is stored exactly."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from sqlalchemy import func, select

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from station.app import Station
from station.store.audit import AuditRow
from station.store.charging import (
    AnomalyRow,
    MeterSampleRow,
    TransactionRow,
    list_charge_points,
)
from tests.ocpp.conftest import PASSWORD

VERSIONS = ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"]


def small_battery() -> Battery:
    return Battery(capacity_kwh=Decimal(10), soc=Decimal("0.6"), max_power_kw=Decimal(50))


async def stored_transaction(station: Station, cp_id: str) -> TransactionRow:
    async with station.db.reader() as session:
        row = await session.scalar(
            select(TransactionRow).where(TransactionRow.charge_point_id == cp_id)
        )
        assert row is not None
        session.expunge(row)
    assert row is not None
    return row


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_local_start_charges_until_full_and_stores_stop_minus_start(
    station: Station, ocpp_url: str, version: str
) -> None:
    sim = SimulatedChargePoint(
        ocpp_url, "CP-1", PASSWORD, version, time_scale=3600, meter_interval_s=60,
        meter_start_wh=12_345,
    )  # fmt: skip

    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        plug = sim.plug_in(1, small_battery(), id_token="TAG-1")
        await asyncio.wait_for(plug.ended.wait(), 20)

    row = await stored_transaction(station, "CP-1")
    assert plug.meter_start_wh == 12_345
    assert plug.energy_wh is not None and plug.energy_wh > 3000
    assert row.ended
    assert row.meter_start_wh in (Decimal(12_345), None)
    assert row.energy_wh == Decimal(plug.meter_stop_wh) - Decimal(plug.meter_start_wh)
    assert row.last_register_wh == Decimal(plug.meter_stop_wh)
    assert row.id_token == "TAG-1"
    async with station.db.reader() as session:
        samples = await session.scalar(
            select(func.count()).where(MeterSampleRow.transaction_id == row.id)
        )
    assert samples is not None and samples >= 4


@pytest.mark.parametrize("version", VERSIONS)
async def test_a_remote_start_and_a_remote_stop_end_the_transaction(
    station: Station, ocpp_url: str, version: str
) -> None:
    sim = SimulatedChargePoint(ocpp_url, "CP-2", PASSWORD, version, time_scale=60)
    big = Battery(capacity_kwh=Decimal(100), soc=Decimal("0.1"))

    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        plug = sim.plug_in(1, big)
        accepted = await station.connections.start_transaction(
            "CP-2", evse_id=1, id_token="SESSION-TOKEN", remote_start_id=7
        )
        await asyncio.wait_for(plug.started.wait(), 5)
        await asyncio.sleep(0.3)
        ref = (await stored_transaction(station, "CP-2")).transaction_ref
        stopped = await station.connections.stop_transaction("CP-2", ref)
        await asyncio.wait_for(plug.ended.wait(), 10)

    row = await stored_transaction(station, "CP-2")
    async with station.db.reader() as session:
        audited = (await session.scalars(select(AuditRow.action))).all()
    assert {"ocpp.start_transaction", "ocpp.stop_transaction"} <= set(audited)
    assert accepted and stopped
    assert plug.stop_reason == "Remote"
    assert row.ended and row.stop_reason == "Remote"
    assert row.id_token == "SESSION-TOKEN"
    assert row.energy_wh == Decimal(plug.energy_wh or 0)
    if version != "ocpp1.6":
        assert row.remote_start_id == 7


async def test_the_registry_shows_connection_status_and_version(
    station: Station, ocpp_url: str
) -> None:
    sim = SimulatedChargePoint(ocpp_url, "CP-3", PASSWORD, "ocpp2.1", time_scale=60)

    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        listed = {cp.charge_point_id: cp for cp in await list_charge_points(station.db)}
        version = station.connections.ocpp_version("CP-3")

    assert listed["CP-3"].connected
    assert listed["CP-3"].ocpp_version == "ocpp2.1"
    assert listed["CP-3"].vendor == "chargepay"
    assert not listed["CP-1"].connected
    assert version == "ocpp2.1"


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_16_stop_whose_transaction_data_repeats_the_begin_sample_is_no_anomaly(
    station: Station, ocpp_url: str
) -> None:
    from tests.ocpp.test_bad_input import ask, raw

    start = {"connectorId": 1, "idTag": "T1", "meterStart": 1000,
             "timestamp": "2026-01-01T00:00:00.000Z"}  # fmt: skip

    def sample(at: str, wh: str, context: str) -> dict[str, object]:
        return {"timestamp": at, "sampledValue": [{"value": wh, "context": context,
                "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}  # fmt: skip

    async with await raw(ocpp_url, "CP-1", "ocpp1.6") as ws:
        started = await ask(ws, [2, "s1", "StartTransaction", start])
        transaction_id = started[2]["transactionId"]
        periodic = {"connectorId": 1, "transactionId": transaction_id, "meterValue": [
            sample("2026-01-01T00:10:00Z", "2000", "Sample.Periodic")]}  # fmt: skip
        await ask(ws, [2, "m1", "MeterValues", periodic])
        stop = {
            "transactionId": transaction_id,
            "meterStop": 4000,
            "timestamp": "2026-01-01T00:30:00Z",
            "transactionData": [
                sample("2026-01-01T00:00:00Z", "1000", "Transaction.Begin"),
                sample("2026-01-01T00:30:00Z", "4000", "Transaction.End"),
            ],
        }
        stopped = await ask(ws, [2, "s2", "StopTransaction", stop])

    assert stopped[0] == 3, stopped
    async with station.db.reader() as session:
        kinds = (await session.scalars(select(AnomalyRow.kind))).all()
    assert list(kinds) == []
    row = await stored_transaction(station, "CP-1")
    assert row.ended and row.energy_wh == Decimal(3000)
