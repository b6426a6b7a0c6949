"""Group commit: units share a transaction; a failing unit fails alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.engine import Connection

from station.errors import StationUnavailable
from station.store.base import utcnow
from station.store.charging import ChargePointRow, OcppMessageRow
from station.store.db import Database
from station.store.writer import GroupCommitWriter, Staged

MESSAGES = OcppMessageRow.__table__


def log_row(n: int) -> dict[str, object]:
    return {
        "charge_point_id": "CP-1", "direction": "in", "message_type": 2,
        "message_id": str(n), "action": "Heartbeat", "payload": {}, "at": utcnow(),
    }  # fmt: skip


@pytest.fixture
async def writer(db: Database) -> AsyncIterator[GroupCommitWriter]:
    writer = GroupCommitWriter(db)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    try:
        yield writer
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def count(db: Database) -> int:
    async with db.reader() as session:
        return int(await session.scalar(select(func.count()).select_from(MESSAGES)) or 0)


async def test_concurrent_units_commit_together_in_few_batches(
    db: Database, writer: GroupCommitWriter
) -> None:
    def unit(n: int):  # type: ignore[no-untyped-def]
        def work(_conn: Connection, staged: Staged) -> int:
            staged.add(MESSAGES, log_row(n))  # type: ignore[arg-type]
            return n

        return work

    results = await asyncio.gather(*(writer.submit(unit(n)) for n in range(200)))

    assert results == list(range(200))
    assert await count(db) == 200
    assert writer.batches < 20


async def test_a_failing_unit_fails_alone(db: Database, writer: GroupCommitWriter) -> None:
    def good(_conn: Connection, staged: Staged) -> str:
        staged.add(MESSAGES, log_row(1))  # type: ignore[arg-type]
        return "ok"

    def bad(conn: Connection, _staged: Staged) -> None:
        row = {"charge_point_id": "CP-X", "password_hash": "x", "connected": False,
               "created_at": utcnow()}  # fmt: skip
        conn.execute(insert(ChargePointRow), [row, row])  # duplicate primary key

    outcomes = await asyncio.gather(
        writer.submit(good), writer.submit(bad), writer.submit(good), return_exceptions=True
    )

    assert outcomes[0] == outcomes[2] == "ok"
    assert isinstance(outcomes[1], Exception)
    assert await count(db) == 2


async def test_a_stopped_writer_refuses_work(db: Database) -> None:
    writer = GroupCommitWriter(db)

    with pytest.raises(StationUnavailable):
        await writer.submit(lambda _conn, _staged: None)
    writer.close()


async def test_stop_commits_everything_queued_then_run_returns(db: Database) -> None:
    writer = GroupCommitWriter(db)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)

    def unit(_conn: Connection, staged: Staged) -> None:
        staged.add(MESSAGES, log_row(0))  # type: ignore[arg-type]

    pending = asyncio.gather(*(writer.submit(unit) for _ in range(50)))
    await asyncio.sleep(0)  # every unit queued
    for n in range(1, 51):
        writer.append(MESSAGES, log_row(n))  # type: ignore[arg-type]
    writer.stop()
    writer.stop()
    async with asyncio.timeout(10):
        await task
        await pending

    assert task.result() is None
    assert await count(db) == 100
    with pytest.raises(StationUnavailable):
        await writer.submit(unit)
