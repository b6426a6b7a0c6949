"""Billing on the charging service: links transactions, prices them, stops before the cap."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select

from station.domain.cap import ChargingLimit
from station.domain.tariff import Tariff
from station.payments.fake_gateway import FakeGateway
from station.services.billing import BillingListener
from station.services.ports import Billing, TransactionView
from station.services.session_events import SessionEvents
from station.services.settlement import SettlementService
from station.settings import Settings
from station.store.charging import AnomalyRow, ChargePointRow, TransactionRow
from station.store.db import Database
from station.store.payments import SessionRow
from station.store.readings import UnitSessions
from station.store.writer import GroupCommitWriter

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TOKEN = "TOKEN0123456789ABCDE"


@dataclass
class FakeCommands:
    version: str = "ocpp1.6"
    stops: list[str] = field(default_factory=list)
    costs: list[Decimal] = field(default_factory=list)
    limits: list[ChargingLimit] = field(default_factory=list)

    def ocpp_version(self, charge_point_id: str) -> str | None:
        return self.version

    def post_stop_transaction(self, charge_point_id: str, transaction_ref: str) -> None:
        self.stops.append(transaction_ref)

    def post_cost_updated(
        self, charge_point_id: str, transaction_ref: str, total_cost: Decimal
    ) -> None:
        self.costs.append(total_cost)

    def post_charging_limit(
        self, charge_point_id: str, transaction_ref: str, limit: ChargingLimit
    ) -> None:
        self.limits.append(limit)


class InUnit:
    """A BillingListener as the charging service runs it: each transaction's change billed
    inside a writer unit of its own (committed), then billing's act."""

    def __init__(self, billing: BillingListener, writer: GroupCommitWriter) -> None:
        self.billing = billing
        self.writer = writer

    async def id_token_accepted(self, charge_point_id: str, id_token: str) -> bool | None:
        return await self.billing.id_token_accepted(charge_point_id, id_token)

    async def transaction_updated(self, transaction: TransactionView) -> Billing:
        act = await self.writer.submit(
            lambda conn, staged: self.billing.bill(UnitSessions(conn, staged), transaction)
        )
        return act()


@asynccontextmanager
async def running_writer(db: Database) -> AsyncIterator[GroupCommitWriter]:
    writer = GroupCommitWriter(db)
    task = asyncio.create_task(writer.run())
    await asyncio.sleep(0)
    try:
        yield writer
    finally:
        writer.stop()
        await task


@pytest.fixture
async def listener(db: Database) -> AsyncIterator[tuple[InUnit, FakeCommands, SettlementService]]:
    async with db.session() as session:
        session.add(
            SessionRow(
                session_id="ses_1",
                agent_id="agt_1",
                negotiation_id="neg_1",
                offer_id="off_1",
                challenge_id="ch_1",
                charge_point_id="CP-1",
                evse_id=1,
                id_token=TOKEN,
                remote_start_id=1,
                tariff=Tariff("usd", Decimal("0.50"), session_fee=Decimal("0.50")).to_wire(),
                cap=Decimal("5.00"),
                currency="usd",
                status="authorized",
                energy_wh=Decimal(0),
                cost=Decimal(0),
                payment_reference="pi_1",
                payment_status="requires_capture",
                created_at=T0,
                updated_at=T0,
            )
        )
    commands = FakeCommands()
    settings = Settings(database_url=db.url)
    settlement = SettlementService(db, settings, FakeGateway(), SessionEvents(), lambda: T0)
    billing = BillingListener(db, SessionEvents(), settlement, commands, lambda: T0)  # type: ignore[arg-type]
    async with running_writer(db) as writer:
        yield InUnit(billing, writer), commands, settlement


def view(
    energy_wh: str, minutes: int, power_w: str | None = None, ended: bool = False
) -> TransactionView:
    return TransactionView(
        transaction_id=7,
        charge_point_id="CP-1",
        transaction_ref="7",
        evse_id=1,
        id_token=TOKEN,
        started_at=T0,
        meter_start_wh=Decimal(1000),
        energy_wh=Decimal(energy_wh),
        last_reading_at=T0 + timedelta(minutes=minutes),
        ended=ended,
        stopped_at=T0 + timedelta(minutes=minutes) if ended else None,
        power_w=Decimal(power_w) if power_w else None,
    )


async def test_only_the_sessions_token_at_its_charge_point_is_accepted(
    listener: tuple[InUnit, FakeCommands, SettlementService],
) -> None:
    billing, _, _ = listener

    assert await billing.id_token_accepted("CP-1", TOKEN) is True
    assert await billing.id_token_accepted("CP-2", TOKEN) is False
    assert await billing.id_token_accepted("CP-1", "SOMEONE-ELSE") is None


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1"])
async def test_the_running_cost_is_pushed_and_the_limit_lands_the_last_sample_on_the_cap(
    listener: tuple[InUnit, FakeCommands, SettlementService], version: str
) -> None:
    billing, commands, _ = listener
    commands.version = version

    first = await billing.transaction_updated(view("0", 0))
    second = await billing.transaction_updated(view("4000", 5, "48000"))  # 2.50, +4 kWh next
    third = await billing.transaction_updated(view("8000", 10, "48000"))  # 4.50: next passes 5
    assert commands.stops == []
    fourth = await billing.transaction_updated(view("9000", 15, "12000"))  # 5.00: the cap

    assert [r.total_cost for r in (first, second, third, fourth)] == [
        Decimal("0.50"),
        Decimal("2.50"),
        Decimal("4.50"),
        Decimal("5.00"),
    ]
    assert commands.costs == [Decimal("0.50"), Decimal("2.50"), Decimal("4.50"), Decimal("5.00")]
    # At 2.50 two more samples would pass the cap: 48 kW while the money lasts (2.50 at
    # 24.00 an hour: 375 s), then 0 W. At 4.50 the 0.50 left buys 1 kWh: 12 kW for the
    # next 5 minutes, so that sample lands on the cap.
    assert commands.limits == [
        ChargingLimit(1, Decimal(48000), T0 + timedelta(minutes=5), Decimal(375)),
        ChargingLimit(1, Decimal(12000), T0 + timedelta(minutes=10), Decimal(300)),
    ]
    assert commands.stops == ["7"]
    assert third.max_cost is None  # the station enforces the cap itself


async def test_a_running_cost_the_charge_point_heard_already_is_not_pushed_again(
    listener: tuple[InUnit, FakeCommands, SettlementService],
) -> None:
    billing, commands, _ = listener
    commands.version = "ocpp2.0.1"

    replies = [
        await billing.transaction_updated(view(wh, minute))
        for wh, minute in (("0", 0), ("1000", 1), ("1004", 2), ("1009", 3), ("1010", 4))
    ]

    costs = ["0.50", "1.00", "1.00", "1.00", "1.01"]
    assert [r.total_cost for r in replies] == [Decimal(c) for c in costs]
    assert commands.costs == [Decimal("0.50"), Decimal("1.00"), Decimal("1.01")]


async def test_on_ocpp21_the_charge_stops_when_the_next_sample_would_pass_the_cap(
    listener: tuple[InUnit, FakeCommands, SettlementService],
) -> None:
    billing, commands, _ = listener
    commands.version = "ocpp2.1"

    await billing.transaction_updated(view("4000", 5, "48000"))
    await billing.transaction_updated(view("8000", 10, "48000"))  # 4.50: next passes 5

    assert commands.stops == ["7"] and commands.limits == []


async def test_energy_past_the_cap_is_an_unbilled_energy_anomaly_with_its_amount(
    listener: tuple[InUnit, FakeCommands, SettlementService], db: Database
) -> None:
    billing, _, _ = listener
    async with db.session() as session:
        session.add(ChargePointRow(charge_point_id="CP-1", password_hash="-"))
        await session.flush()
        session.add(
            TransactionRow(
                id=7, charge_point_id="CP-1", transaction_ref="7", evse_id=1, connector_id=1,
                energy_wh=Decimal(12000), started_at=T0,
            )
        )  # fmt: skip

    reply = await billing.transaction_updated(view("12000", 20, ended=True))  # 6.50 on 5.00

    assert reply.total_cost == Decimal("5.00")
    async with db.reader() as session:
        rows = (await session.execute(select(AnomalyRow.kind, AnomalyRow.detail))).all()
    assert [kind for kind, _ in rows] == ["unbilled_energy"]
    assert "3000 Wh past its cap of 5.00 usd: 1.50 usd not billed" in rows[0][1]


async def test_on_ocpp21_the_cap_goes_to_the_charge_point(
    listener: tuple[InUnit, FakeCommands, SettlementService],
) -> None:
    billing, commands, _ = listener
    commands.version = "ocpp2.1"

    reply = await billing.transaction_updated(view("1000", 1))

    assert reply.max_cost == Decimal("5.00")


async def test_a_token_of_a_finished_session_is_refused(
    listener: tuple[InUnit, FakeCommands, SettlementService],
) -> None:
    billing, _, settlement = listener
    await billing.transaction_updated(view("2000", 5, ended=True))
    await settlement.settle("ses_1")

    assert await billing.id_token_accepted("CP-1", TOKEN) is False
