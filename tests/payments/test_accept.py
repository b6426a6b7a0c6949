"""Accepting an offer: the 402, the hold, and every refusal — services on a real database,
an in-memory gateway and an injected clock."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import mpp
import pytest
from sqlalchemy import select

from station.errors import (
    CapTooLow,
    InvalidCredential,
    OfferExpired,
    PaymentDeclined,
    PaymentRequired,
)
from station.payments.authorize import Authorizer
from station.payments.fake_gateway import FakeGateway
from station.services.authorisation import AuthorisationService
from station.services.negotiations import NegotiationService, OpenRequest
from station.services.session_events import SessionEvents
from station.services.settlement import SettlementService
from station.settings import Settings
from station.store.charging import ChargePointRow
from station.store.db import Database
from station.store.payments import SessionRow
from station.store.trust import AgentRow, SpendRow
from station.store.unit_of_work import SqlUnitsOfWork
from vehicle.payer import parse_challenge

SECRET = "unit-secret"


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Commands:
    started: list[str] = field(default_factory=list)
    accept_start: bool = True

    def is_connected(self, charge_point_id: str) -> bool:
        return True

    def is_connected_here(self, charge_point_id: str) -> bool:
        return True

    def ocpp_version(self, charge_point_id: str) -> str | None:
        return "ocpp2.0.1"

    async def start_transaction(self, charge_point_id: str, **kw: Any) -> bool:
        self.started.append(kw["id_token"])
        return self.accept_start


@dataclass
class Desk:
    db: Database
    clock: Clock
    gateway: FakeGateway
    commands: Commands
    negotiations: NegotiationService
    accepts: AuthorisationService

    async def offer(self) -> dict[str, Any]:
        return await self.negotiations.open("agt_1", OpenRequest("CP-1", Decimal(20)))

    async def challenge(self, neg: dict[str, Any], cap: str) -> mpp.Challenge:
        with pytest.raises(PaymentRequired) as refused:
            await self.accept(neg, cap, None)
        header = refused.value.headers["WWW-Authenticate"]  # type: ignore[attr-defined]
        return parse_challenge(header, ("authorize",))

    async def accept(self, neg: dict[str, Any], cap: str, auth: str | None) -> dict[str, Any]:
        view, _ = await self.accepts.accept(
            "agt_1", neg["negotiation_id"], neg["offer"]["offer_id"], cap, auth
        )
        return view


def pay(challenge: mpp.Challenge, method: str = "pm_card_visa") -> str:
    return mpp.Credential(challenge.to_echo(), {"payment_method": method}).to_authorization()


@pytest.fixture
async def desk(db: Database) -> Desk:
    async with db.session() as session:
        session.add(ChargePointRow(charge_point_id="CP-1", password_hash="x"))
        session.add(
            AgentRow(
                agent_id="agt_1",
                name="car",
                public_key="k",
                currency="usd",
                limit_per_session=Decimal(50),
                limit_per_window=Decimal(200),
                window_hours=24,
            )
        )
    clock, gateway, commands = Clock(), FakeGateway(), Commands()
    settings = Settings(database_url=db.url, offer_ttl_s=60, challenge_ttl_s=30)
    settlement = SettlementService(db, settings, gateway, SessionEvents(), clock)
    authorizer = Authorizer(secret_key=SECRET, realm="unit", ttl_s=30)
    return Desk(
        db,
        clock,
        gateway,
        commands,
        NegotiationService(SqlUnitsOfWork(db), settings, SECRET, clock),
        AuthorisationService(
            db,
            settings,
            SECRET,
            authorizer,
            gateway,
            settlement,
            commands,  # type: ignore[arg-type]
            clock,
        ),
    )


async def test_a_paid_credential_holds_the_cap_and_starts_the_charge_point(desk: Desk) -> None:
    neg = await desk.offer()
    challenge = await desk.challenge(neg, "12.50")

    session = await desk.accept(neg, "12.50", pay(challenge))

    (intent,) = desk.gateway.intents.values()
    assert challenge.request["amount"] == "1250" and challenge.request["currency"] == "usd"
    assert (intent.amount_minor, intent.status) == (1250, "requires_capture")
    assert session["status"] == "authorized" and session["cap"] == "12.50"
    assert session["payment"] == {"provider": "stripe", "reference": intent.reference,
                                  "status": "requires_capture", "intent": "authorize"}  # fmt: skip
    assert desk.commands.started == [session["id_token"]]
    assert desk.gateway.calls == {"authorize": 1}


async def test_an_offer_past_valid_until_cannot_be_accepted(desk: Desk) -> None:
    neg = await desk.offer()
    desk.clock.now += timedelta(seconds=61)

    with pytest.raises(OfferExpired):
        await desk.accept(neg, "12.50", None)


async def test_a_cap_below_the_tariffs_minimum_is_too_low(desk: Desk) -> None:
    neg = await desk.offer()

    with pytest.raises(CapTooLow):
        await desk.accept(neg, "0.49", None)  # the session fee is 0.50


async def test_a_declined_card_fails_the_session_and_gives_its_allowance_back(
    desk: Desk,
) -> None:
    neg = await desk.offer()
    challenge = await desk.challenge(neg, "12.50")

    with pytest.raises(PaymentDeclined) as declined:
        await desk.accept(neg, "12.50", pay(challenge, "pm_card_chargeDeclined"))

    async with desk.db.reader() as session:
        (row,) = (await session.scalars(select(SessionRow))).all()
        spend = await session.get(SpendRow, row.session_id)
        session.expunge_all()
    assert "WWW-Authenticate" in declined.value.headers  # type: ignore[attr-defined]
    assert desk.commands.started == []
    assert (row.status, row.payment_status) == ("failed", "declined")
    assert spend is not None and spend.amount == 0 and spend.status == "settled"


async def test_a_credential_works_once(desk: Desk) -> None:
    neg = await desk.offer()
    credential = pay(await desk.challenge(neg, "12.50"))
    await desk.accept(neg, "12.50", credential)

    with pytest.raises(InvalidCredential, match="already used"):
        await desk.accept(neg, "12.50", credential)


async def test_a_refused_start_releases_the_hold(desk: Desk) -> None:
    desk.commands.accept_start = False
    neg = await desk.offer()

    with pytest.raises(Exception, match="did not start"):
        await desk.accept(neg, "12.50", pay(await desk.challenge(neg, "12.50")))

    (intent,) = desk.gateway.intents.values()
    assert intent.status == "canceled"
