"""The audit log is a hash chain: appends serialise, tampering is detected."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import delete, select, update

from station.store import audit
from station.store.audit import AuditRow
from station.store.db import Database

NEW_YEAR = datetime(2026, 1, 1, tzinfo=UTC)


async def _append(db: Database, n: int, actor: str = "operator") -> None:
    for i in range(n):
        async with db.session() as session:
            await audit.record(
                session,
                actor=actor,
                action="agent.suspended",
                subject=f"agt_{i}",
                data={
                    "reason": "test",
                    "amount": Decimal("1.50"),
                    "at": datetime(2026, 1, 1, tzinfo=UTC),
                },
            )


async def _verify(db: Database) -> audit.Verification:
    async with db.reader() as session:
        return await audit.verify(session)


async def test_an_untouched_chain_verifies(db: Database) -> None:
    await _append(db, 5)

    result = await _verify(db)

    assert result.ok
    assert result.rows == 5


async def test_decimals_and_datetimes_are_stored_as_strings(db: Database) -> None:
    await _append(db, 1)

    async with db.reader() as session:
        lines = [line async for line in audit.export_lines(session)]

    row = json.loads(lines[0])
    assert row["data"] == {"amount": "1.50", "at": "2026-01-01T00:00:00+00:00", "reason": "test"}
    assert row["prev_hash"] == audit.GENESIS


async def test_editing_a_row_is_detected(db: Database) -> None:
    await _append(db, 5)
    async with db.session() as session:
        await session.execute(
            update(AuditRow).where(AuditRow.seq == 3).values(data='{"reason":"forged"}')
        )

    result = await _verify(db)

    assert not result.ok
    assert result.broken_seq == 3


async def test_deleting_a_row_is_detected(db: Database) -> None:
    await _append(db, 5)
    async with db.session() as session:
        await session.execute(delete(AuditRow).where(AuditRow.seq == 2))

    result = await _verify(db)

    assert not result.ok
    assert result.broken_seq == 3


async def test_reordering_rows_is_detected(db: Database) -> None:
    await _append(db, 4)
    async with db.session() as session:
        await session.execute(update(AuditRow).where(AuditRow.seq == 2).values(seq=-2))
        await session.execute(update(AuditRow).where(AuditRow.seq == 3).values(seq=2))
        await session.execute(update(AuditRow).where(AuditRow.seq == -2).values(seq=3))

    result = await _verify(db)

    assert not result.ok
    assert result.broken_seq == 2


async def test_truncation_is_caught_against_a_known_head(db: Database) -> None:
    await _append(db, 3)
    head = (await _verify(db)).head
    async with db.session() as session:
        await session.execute(delete(AuditRow).where(AuditRow.seq == 3))

    async with db.reader() as session:
        result = await audit.verify(session, expected_head=head)

    assert not result.ok


async def test_concurrent_writers_never_fork_the_chain(db: Database) -> None:
    await asyncio.gather(*(_append(db, 5, actor=f"writer-{w}") for w in range(4)))

    result = await _verify(db)
    async with db.reader() as session:
        seqs = (await session.scalars(select(AuditRow.seq).order_by(AuditRow.seq))).all()

    assert result.ok, result
    assert seqs == list(range(1, 21))
