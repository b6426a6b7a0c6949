"""Group commit: units share a transaction; a failing unit or row fails alone."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import func, insert, select, text
from sqlalchemy.engine import Connection

from station.errors import StationUnavailable, StoreRefused, StoreUnavailable
from station.metrics import StationMetrics
from station.store.base import utcnow
from station.store.charging import ChargePointRow, MeterSampleRow, OcppMessageRow
from station.store.db import Database
from station.store.writer import GroupCommitWriter, JsonText, Staged

MESSAGES = OcppMessageRow.__table__
SAMPLES = MeterSampleRow.__table__


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


async def test_staged_rows_read_back_as_written_through_the_driver(
    db: Database, writer: GroupCommitWriter
) -> None:
    """Staged rows skip SQLAlchemy's execute: every column type must still round-trip."""
    at = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC)
    rows = [
        {**log_row(1), "payload": {"a": [1, 2.5, None, "é"]}, "at": at},
        {**log_row(2), "payload": JsonText('{"pre":"encoded"}'), "action": None},
        {**log_row(3), "payload": "a JSON string"},
    ]

    def work(conn: Connection, staged: Staged) -> None:
        conn.execute(insert(ChargePointRow).values(
            charge_point_id="CP-1", password_hash="x", connected=False, created_at=at))  # fmt: skip
        for row in rows:
            staged.add(MESSAGES, row)  # type: ignore[arg-type]
        staged.update(
            ChargePointRow.__table__,  # type: ignore[arg-type]
            "charge_point_id",
            "CP-1",
            {"last_seen": at + timedelta(hours=1), "vendor": "chargepay", "connected": True},
        )

    await writer.submit(work)

    async with db.reader() as session:
        logged = (await session.scalars(select(OcppMessageRow).order_by(OcppMessageRow.id))).all()
        read = [(r.message_id, r.action, r.payload, r.at) for r in logged]
        cp = await session.get(ChargePointRow, "CP-1")
        assert cp is not None
        seen = (cp.last_seen, cp.vendor, cp.connected)
    assert [r[:3] for r in read] == [
        ("1", "Heartbeat", {"a": [1, 2.5, None, "é"]}),
        ("2", None, {"pre": "encoded"}),
        ("3", "Heartbeat", "a JSON string"),
    ]
    assert read[0][3] == at and read[0][3].tzinfo is not None
    assert seen == (at + timedelta(hours=1), "chargepay", True)


async def test_sqlite_batches_wait_for_a_held_write_lock_off_the_event_loop(
    tmp_path: Path,
) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'locked.db'}")
    await db.upgrade()
    async with db.session():
        pass  # the station's engine puts the file in WAL mode
    writer = GroupCommitWriter(db)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    holder = sqlite3.connect(tmp_path / "locked.db", isolation_level=None)
    try:
        holder.execute("BEGIN IMMEDIATE")  # another connection holds the write lock
        writer.append(MESSAGES, log_row(1))  # type: ignore[arg-type]
        pending = asyncio.create_task(writer.submit(lambda _conn, _staged: "done"))

        ticks = 0
        for _ in range(20):  # the event loop keeps running meanwhile
            await asyncio.sleep(0.01)
            ticks += 1
        assert ticks == 20 and not pending.done()

        holder.execute("COMMIT")
        async with asyncio.timeout(10):
            assert await pending == "done"
        assert await count(db) == 1
    finally:
        holder.close()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await db.dispose()


@pytest.mark.parametrize("checkpoint_every", [1, 10**9])
async def test_sqlite_wal_is_checkpointed_by_the_writer_not_on_commit(
    tmp_path: Path, checkpoint_every: int
) -> None:
    path = tmp_path / "wal.db"
    db = Database(f"sqlite+aiosqlite:///{path}")
    await db.upgrade()
    await db.dispose()  # the last connection out checkpoints: start from a settled file
    size_before = path.stat().st_size
    writer = GroupCommitWriter(db, checkpoint_every=checkpoint_every)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)

    for batch in range(5):  # 5 MB: past SQLite's own autocheckpoint threshold (1000 pages)
        for n in range(500):
            row = {**log_row(n), "payload": {"pad": "x" * 2000, "b": batch}}
            writer.append(MESSAGES, row)  # type: ignore[arg-type]
        await writer.submit(lambda _conn, _staged: None)
    await writer._finish_checkpoint()
    size_after = path.stat().st_size  # before the writer closes (closing checkpoints too)
    writer.stop()
    await task

    if checkpoint_every == 1:
        assert size_after > size_before + 4_000_000  # the rows reached the database file
    else:
        assert size_after == size_before  # commits never checkpoint: the rows are in the WAL


async def test_staged_rows_are_stored_exactly_as_sqlalchemy_stores_them(
    db: Database, writer: GroupCommitWriter
) -> None:
    """Same text for times on SQLite, no float on the way for decimals on PostgreSQL."""
    sample = {
        "charge_point_id": "CP-1", "transaction_id": None, "evse_id": 1,
        "timestamp": datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=UTC),
        "measurand": "Energy.Active.Import.Register", "phase": None,
        "context": "Sample.Periodic", "unit": "Wh",
        "value": Decimal("12345678901234567.123"), "raw": None, "seq_no": 7,
    }  # fmt: skip

    def work(conn: Connection, staged: Staged) -> None:
        conn.execute(insert(SAMPLES), [{**sample, "evse_id": 1}])  # SQLAlchemy's way
        staged.add(SAMPLES, {**sample, "evse_id": 2})  # the driver's way

    await writer.submit(work)

    async with db.reader() as session:
        stored = (
            await session.execute(
                text(
                    "SELECT evse_id, CAST(timestamp AS TEXT), CAST(value AS TEXT)"
                    " FROM meter_samples ORDER BY evse_id"
                )
            )
        ).all()
        values = (
            await session.scalars(select(MeterSampleRow.value).order_by(MeterSampleRow.evse_id))
        ).all()
    assert stored[0][1:] == stored[1][1:]
    if not db.is_sqlite:  # SQLite keeps NUMERIC as a double: SQLAlchemy writes a float too
        assert values == [Decimal("12345678901234567.123")] * 2


# --- a bad row never fails anyone else's batch (issue 15 item 1) ---------------------------


def refused_values(db: Database) -> list[dict[str, object]]:
    """Frame-log rows this database refuses: text it cannot encode, an integer past the column."""
    bad = [
        {**log_row(-1), "message_id": "\ud800"},  # a lone surrogate
        {**log_row(-2), "message_type": 2**70},  # past SQLite's 64 and PostgreSQL's 32 bits
    ]
    if not db.is_sqlite:
        bad.append({**log_row(-3), "message_id": "a\x00b"})  # NUL: PostgreSQL text refuses it
    return bad


@pytest.mark.parametrize("bad_index", [0, 1, 2])
async def test_one_refused_appended_row_loses_no_other_row(db: Database, bad_index: int) -> None:
    bad_rows = refused_values(db)
    if bad_index >= len(bad_rows):
        pytest.skip("SQLite stores NUL in text")
    metrics = StationMetrics()
    writer = GroupCommitWriter(db, metrics=metrics)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    try:
        for n in range(300):  # two bystanders' frames, the bad one in the middle
            writer.append(MESSAGES, log_row(n))  # type: ignore[arg-type]
            if n == 150:
                writer.append(MESSAGES, bad_rows[bad_index])  # type: ignore[arg-type]
        await writer.submit(lambda _conn, _staged: None)  # after the rows' batch
    finally:
        writer.stop()
        await task

    assert await count(db) == 300
    assert refusals(metrics, "row") == 1


async def test_a_refused_unit_fails_alone_and_the_rest_of_its_batch_commits(
    db: Database,
) -> None:
    bad_row = refused_values(db)[0]
    metrics = StationMetrics()
    writer = GroupCommitWriter(db, metrics=metrics)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)

    def unit(row: dict[str, object]):  # type: ignore[no-untyped-def]
        def work(_conn: Connection, staged: Staged) -> object:
            staged.add(MESSAGES, row)  # type: ignore[arg-type]
            return row["message_id"]

        return work

    units = [unit(log_row(n)) for n in range(200)]
    units.insert(77, unit(bad_row))
    try:
        outcomes = await asyncio.gather(*(writer.submit(u) for u in units), return_exceptions=True)
    finally:
        writer.stop()
        await task

    refused = outcomes.pop(77)
    assert isinstance(refused, StoreRefused)
    assert outcomes == [str(n) for n in range(200)]
    assert await count(db) == 200
    assert refusals(metrics, "unit") == 1
    assert writer.batches <= 20  # halves, not one batch per unit


async def test_an_unreachable_database_fails_every_unit_at_once_as_unavailable(
    db: Database,
) -> None:
    url = (
        "sqlite+aiosqlite:////nonexistent-dir/x.db"
        if db.is_sqlite
        else "postgresql+asyncpg://postgres@127.0.0.1:9/none"  # nothing listens there
    )
    down = Database(url)
    writer = GroupCommitWriter(down)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    try:
        async with asyncio.timeout(20):
            outcomes = await asyncio.gather(
                *(writer.submit(lambda _conn, _staged: None) for _ in range(50)),
                return_exceptions=True,
            )
    finally:
        writer.stop()
        await task
        await down.dispose()

    assert all(isinstance(outcome, StoreUnavailable) for outcome in outcomes), outcomes[:3]
    assert writer.batches == 0


def refusals(metrics: StationMetrics, kind: str) -> float:
    value = metrics.registry.get_sample_value("chargepay_store_refusals_total", {"kind": kind})
    return value or 0.0
