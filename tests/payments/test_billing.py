"""Billing on the charging service: links transactions, prices them, stops before the cap."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from station.domain.tariff import Tariff
from station.payments.fake_gateway import FakeGateway
from station.services.billing import BillingListener
from station.services.ports import TransactionView
from station.services.session_events import SessionEvents
from station.services.settlement import SettlementService
from station.settings import Settings
from station.store.db import Database
from station.store.payments import SessionRow

T0 = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TOKEN = "TOKEN0123456789ABCDE"


@dataclass
class FakeCommands:
    version: str = "ocpp1.6"
    stops: list[str] = field(default_factory=list)
    costs: list[Decimal] = field(default_factory=list)

    def ocpp_version(self, charge_point_id: str) -> str | None:
        return self.version

    def post_stop_transaction(self, charge_point_id: str, transaction_ref: str) -> None:
        self.stops.append(transaction_ref)

    def post_cost_updated(
        self, charge_point_id: str, transaction_ref: str, total_cost: Decimal
    ) -> None:
        self.costs.append(total_cost)


@pytest.fixture
async def listener(db: Database) -> tuple[BillingListener, FakeCommands, SettlementService]:
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
    billing = BillingListener(db, SessionEvents(), settlement, lambda: commands, lambda: T0)  # type: ignore[arg-type,return-value]
    return billing, commands, settlement


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
    listener: tuple[BillingListener, FakeCommands, SettlementService],
) -> None:
    billing, _, _ = listener

    assert await billing.id_token_accepted("CP-1", TOKEN) is True
    assert await billing.id_token_accepted("CP-2", TOKEN) is False
    assert await billing.id_token_accepted("CP-1", "SOMEONE-ELSE") is None


async def test_the_running_cost_is_pushed_and_the_charge_stops_before_the_cap(
    listener: tuple[BillingListener, FakeCommands, SettlementService],
) -> None:
    billing, commands, _ = listener

    first = await billing.transaction_updated(view("0", 0))
    second = await billing.transaction_updated(view("4000", 5, "48000"))  # 2.50, +4 kWh next
    third = await billing.transaction_updated(view("8000", 10, "48000"))  # 4.50: next passes 5

    assert (first.total_cost, second.total_cost, third.total_cost) == (
        Decimal("0.50"),
        Decimal("2.50"),
        Decimal("4.50"),
    )
    assert commands.costs == [Decimal("0.50"), Decimal("2.50"), Decimal("4.50")]
    assert commands.stops == ["7"]
    assert third.max_cost is None  # 1.6: the station enforces the cap itself


async def test_on_ocpp21_the_cap_goes_to_the_charge_point(
    listener: tuple[BillingListener, FakeCommands, SettlementService],
) -> None:
    billing, commands, _ = listener
    commands.version = "ocpp2.1"

    reply = await billing.transaction_updated(view("1000", 1))

    assert reply.max_cost == Decimal("5.00")


async def test_a_token_of_a_finished_session_is_refused(
    listener: tuple[BillingListener, FakeCommands, SettlementService],
) -> None:
    billing, _, settlement = listener
    await billing.transaction_updated(view("2000", 5, ended=True))
    await settlement.settle("ses_1")

    assert await billing.id_token_accepted("CP-1", TOKEN) is False
