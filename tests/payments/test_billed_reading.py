"""A billed reading is one writer unit: its metering and its session's billing commit in
one database transaction (with the rest of the batch), or neither does."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import event, func, select
from sqlalchemy.engine import Engine

import station.domain.cost
from station.domain.cost import Usage
from station.domain.events import (
    ENERGY_REGISTER,
    MeterReading,
    MeterValuesReported,
    SampledValue,
    TransactionStarted,
)
from station.domain.tariff import Tariff
from station.errors import TransactionNotStored
from station.payments.fake_gateway import FakeGateway
from station.services.billing import BillingListener
from station.services.charging import ChargingService
from station.services.session_events import SessionEvents
from station.services.settlement import SettlementService
from station.settings import Settings
from station.store.charging import ChargePointRow, MeterSampleRow, TransactionRow
from station.store.db import Database
from station.store.payments import SessionRow
from station.store.readings import UnitSessions
from station.store.writer import GroupCommitWriter, Staged
from tests.payments.test_billing import TOKEN, FakeCommands, running_writer

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


@dataclass
class Charging:
    service: ChargingService
    writer: GroupCommitWriter
    commands: FakeCommands
    db: Database


@pytest.fixture
async def charging(db: Database) -> AsyncIterator[Charging]:
    async with db.session() as session:
        session.add(ChargePointRow(charge_point_id="CP-1", password_hash="-"))
        session.add(
            SessionRow(
                session_id="ses_1", agent_id="agt_1", negotiation_id="neg_1", offer_id="off_1",
                challenge_id="ch_1", charge_point_id="CP-1", evse_id=1, id_token=TOKEN,
                remote_start_id=1, tariff=Tariff("usd", Decimal("0.50")).to_wire(),
                cap=Decimal("5.00"), currency="usd", status="authorized",
                payment_reference="pi_1", payment_status="requires_capture",
                created_at=T0, updated_at=T0,
            )
        )  # fmt: skip
    commands = FakeCommands(version="ocpp2.0.1")
    settlement = SettlementService(
        db, Settings(database_url=db.url), FakeGateway(), SessionEvents(), lambda: T0
    )
    billing = BillingListener(db, SessionEvents(), settlement, commands, lambda: T0)  # type: ignore[arg-type]
    async with running_writer(db) as writer:
        service = ChargingService(db, writer, listener=billing)
        await service.transaction_started(
            TransactionStarted(
                charge_point_id="CP-1", evse_id=1, connector_id=1, id_token=TOKEN,
                timestamp=T0, transaction_ref="tx-1", meter_start_wh=Decimal(1000),
                readings=(reading(1000, 0),),
            )
        )  # fmt: skip
        yield Charging(service, writer, commands, db)


def reading(register_wh: int, minutes: int) -> MeterReading:
    value = SampledValue(ENERGY_REGISTER, Decimal(register_wh), "Wh")
    return MeterReading(T0 + timedelta(minutes=minutes), (value,))


def meter_values(register_wh: int, minutes: int, seq_no: int) -> MeterValuesReported:
    return MeterValuesReported(
        charge_point_id="CP-1",
        evse_id=1,
        transaction_ref="tx-1",
        readings=(reading(register_wh, minutes),),
        timestamp=T0 + timedelta(minutes=minutes),
        seq_no=seq_no,
    )


@contextmanager
def counted() -> Iterator[dict[str, int]]:
    """Database transactions begun and committed on any engine meanwhile."""
    counts = {"begin": 0, "commit": 0}

    def begun(_conn: Any) -> None:
        counts["begin"] += 1

    def committed(_conn: Any) -> None:
        counts["commit"] += 1

    event.listen(Engine, "begin", begun)
    event.listen(Engine, "commit", committed)
    try:
        yield counts
    finally:
        event.remove(Engine, "begin", begun)
        event.remove(Engine, "commit", committed)


async def stored(db: Database) -> tuple[Decimal, Decimal, Decimal, int]:
    """The transaction's energy, the session's energy and cost, the samples stored."""
    async with db.reader() as session:
        tx = await session.scalar(select(TransactionRow.energy_wh))
        row = (await session.execute(select(SessionRow.energy_wh, SessionRow.cost))).one()
        samples = await session.scalar(select(func.count()).select_from(MeterSampleRow))
    assert tx is not None and samples is not None
    return tx, row.energy_wh, row.cost, samples


async def test_a_billed_reading_is_one_database_transaction_and_one_cost_computation(
    charging: Charging, monkeypatch: pytest.MonkeyPatch
) -> None:
    priced: list[Usage] = []
    real_priced = station.domain.cost._priced

    def counted_priced(tariff: Any, usage: Usage) -> Any:
        priced.append(usage)
        return real_priced(tariff, usage)

    monkeypatch.setattr(station.domain.cost, "_priced", counted_priced)
    with counted() as counts:
        reply = await charging.service.meter_values(meter_values(3000, 5, 1))

    assert counts == {"begin": 1, "commit": 1}  # the group commit's batch, nothing after
    # What was used is priced once (the cap decision also prices the next sample's
    # projections, at other usages).
    used = Usage(energy_wh=Decimal(2000), charging_seconds=Decimal(300))
    assert priced.count(used) == 1
    assert reply is not None and reply.total_cost == Decimal("1.00")
    assert charging.commands.costs == [Decimal("0.00"), Decimal("1.00")]
    assert await stored(charging.db) == (Decimal(2000), Decimal(2000), Decimal("1.00"), 2)


def _lost_after(real: Any) -> Any:
    def lost(*args: Any) -> Any:
        real(*args)  # done on the connection, which then goes: nothing commits
        raise ConnectionResetError(104, "connection lost before the commit")

    return lost


@pytest.mark.parametrize(
    "where",
    [
        pytest.param((UnitSessions, "by_id_token"), id="between-the-reading-and-its-billing"),
        pytest.param((Staged, "flush"), id="at-the-batch-s-last-step"),
    ],
)
async def test_a_reading_whose_unit_is_lost_stores_neither_its_metering_nor_its_billing(
    charging: Charging, monkeypatch: pytest.MonkeyPatch, where: tuple[type, str]
) -> None:
    """The database connection goes after the reading's rows were written and before the
    commit (what a crash there leaves): nothing of the reading is stored, billed or
    pushed; sent again (it was not answered), it is stored and billed once."""
    before = await stored(charging.db)
    owner, name = where

    with monkeypatch.context() as patch:
        patch.setattr(owner, name, _lost_after(getattr(owner, name)))
        with pytest.raises(TransactionNotStored):
            await charging.service.meter_values(meter_values(3000, 5, 1))

    assert await stored(charging.db) == before  # neither the metering nor the billing
    assert charging.commands.costs == [Decimal("0.00")]  # nothing told of an unstored cost
    reply = await charging.service.meter_values(meter_values(3000, 5, 1))  # sent again

    assert reply is not None and reply.total_cost == Decimal("1.00")
    assert await stored(charging.db) == (Decimal(2000), Decimal(2000), Decimal("1.00"), 2)
    assert charging.commands.costs == [Decimal("0.00"), Decimal("1.00")]
