"""Connects and disconnects: one writer unit for a storm of them, and the last one wins."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import insert, select

from station.services.charging import ChargingService
from station.store.base import utcnow
from station.store.charging import ChargePointRow, hash_password
from station.store.db import Database
from station.store.writer import GroupCommitWriter

IDS = [f"CP-{n:03d}" for n in range(300)]


@pytest.fixture
async def service(db: Database) -> AsyncIterator[ChargingService]:
    stored = hash_password("a-password-for-presence")  # one scrypt hash for all the rows
    async with db.session() as session:
        await session.execute(
            insert(ChargePointRow),
            [
                {"charge_point_id": cp, "password_hash": stored, "created_at": utcnow()}
                for cp in IDS
            ],
        )
    writer = GroupCommitWriter(db)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    try:
        yield ChargingService(db, writer, node_id="node-7")
    finally:
        writer.stop()
        await task


class Row:
    def __init__(self, connected: bool, node_id: str | None, ocpp_version: str | None) -> None:
        self.connected, self.node_id, self.ocpp_version = connected, node_id, ocpp_version


async def rows(db: Database) -> dict[str, Row]:
    columns = (ChargePointRow.connected, ChargePointRow.node_id, ChargePointRow.ocpp_version)
    async with db.reader() as session:
        found = await session.execute(select(ChargePointRow.charge_point_id, *columns))
        return {cp: Row(*values) for cp, *values in found}


async def test_a_storm_of_connects_is_recorded_in_a_few_writer_units(
    db: Database, service: ChargingService
) -> None:
    await asyncio.gather(*(service.charge_point_connected(cp, "ocpp2.0.1") for cp in IDS))

    stored = await rows(db)
    assert all(stored[cp].connected for cp in IDS)
    assert {stored[cp].node_id for cp in IDS} == {"node-7"}
    assert {stored[cp].ocpp_version for cp in IDS} == {"ocpp2.0.1"}
    assert service.writer.units <= 5  # one per batch of the presence batcher, not 300


async def test_the_last_of_a_charge_points_connects_and_disconnects_wins(
    db: Database, service: ChargingService
) -> None:
    half = len(IDS) // 2
    await asyncio.gather(*(service.charge_point_connected(cp, "ocpp1.6") for cp in IDS))

    # In one gathering: the first half drops and comes back, the second half comes
    # back on another version and then drops.
    calls = []
    for cp in IDS[:half]:
        calls += [
            service.charge_point_disconnected(cp),
            service.charge_point_connected(cp, "ocpp2.1"),
        ]
    for cp in IDS[half:]:
        calls += [
            service.charge_point_connected(cp, "ocpp2.1"),
            service.charge_point_disconnected(cp),
        ]
    await asyncio.gather(*calls)

    stored = await rows(db)
    assert [cp for cp in IDS[:half] if not stored[cp].connected] == []
    assert [cp for cp in IDS[half:] if stored[cp].connected] == []
    assert {stored[cp].ocpp_version for cp in IDS} == {"ocpp2.1"}
