"""The negotiation service's decisions, on the in-memory unit of work: what it stores,
signs and audits, and what it refuses (the wire is tests/api/test_negotiations_api.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from station.errors import NegotiationClosed, NotFound, RateLimited
from station.services.negotiations import CounterRequest, NegotiationService, OpenRequest
from station.services.offers import offer_signature
from station.services.repositories.charge_points import ChargePoint
from station.services.repositories.negotiations import Negotiation, Offer
from station.settings import Settings
from tests.fakes.unit_of_work import FakeStore

T0 = datetime(2026, 1, 5, 9, 30, tzinfo=UTC)
SECRET = "s" * 32
SETTINGS = Settings(
    database_url="sqlite+aiosqlite:///unused.db",
    max_open_negotiations_per_agent=2,
    negotiation_max_rounds=3,
)


def service(units: FakeStore) -> NegotiationService:
    units.table("charge_points")["CP-1"] = ChargePoint("CP-1", "1.6", True, None)
    units.table("charge_points")["CP-gone"] = ChargePoint("CP-gone", "1.6", False, T0)
    return NegotiationService(units, SETTINGS, SECRET, lambda: T0)


async def test_an_opened_negotiation_is_stored_with_its_signed_offer_and_audited() -> None:
    units = FakeStore()

    view = await service(units).open("agt_1", OpenRequest("CP-1", Decimal("20")))

    negotiation: Negotiation = units.table("negotiations")[view["negotiation_id"]]
    offer: Offer = units.table("offers")[view["offer"]["offer_id"]]
    assert (negotiation.status, negotiation.round, negotiation.max_rounds) == ("open", 1, 3)
    assert negotiation.current_offer_id == offer.offer_id
    assert offer.signature == offer_signature(SECRET, offer) == view["offer"]["signature"]
    assert offer.valid_until == T0 + timedelta(seconds=SETTINGS.offer_ttl_s)
    assert [e.action for e in units.table("audit").values()] == ["negotiation.opened"]


@pytest.mark.parametrize("charge_point_id", ["CP-none", "CP-gone"])
async def test_an_unknown_or_removed_charge_point_is_not_found(charge_point_id: str) -> None:
    units = FakeStore()

    with pytest.raises(NotFound):
        await service(units).open("agt_1", OpenRequest(charge_point_id, Decimal("20")))

    assert units.table("negotiations") == {} and units.table("audit") == {}


async def test_the_ceiling_of_live_negotiations_says_when_to_retry() -> None:
    units = FakeStore()
    negotiations = service(units)
    for _ in range(2):
        await negotiations.open("agt_1", OpenRequest("CP-1", Decimal("20")))

    with pytest.raises(RateLimited) as refused:
        await negotiations.open("agt_1", OpenRequest("CP-1", Decimal("20")))

    assert refused.value.extra["retry_after_s"] == SETTINGS.offer_ttl_s * 3
    await negotiations.open("agt_2", OpenRequest("CP-1", Decimal("20")))  # per agent


async def test_a_counter_below_the_floor_gets_a_new_round_and_others_cannot_see_it() -> None:
    units = FakeStore()
    negotiations = service(units)
    opened = await negotiations.open("agt_1", OpenRequest("CP-1", Decimal("20")))
    negotiation_id = opened["negotiation_id"]

    answer = await negotiations.counter(
        "agt_1", negotiation_id, CounterRequest(energy_price_per_kwh=Decimal("0.01"))
    )

    stored: Negotiation = units.table("negotiations")[negotiation_id]
    assert answer["round"] == stored.round
    assert stored.current_offer_id == (answer["offer"] or {}).get(
        "offer_id", stored.current_offer_id
    )
    with pytest.raises(NotFound):
        await negotiations.counter("agt_2", negotiation_id, CounterRequest())


async def test_a_closed_negotiation_takes_no_counter() -> None:
    units = FakeStore()
    negotiations = service(units)
    opened = await negotiations.open("agt_1", OpenRequest("CP-1", Decimal("20")))
    negotiation_id = opened["negotiation_id"]
    table = units.table("negotiations")
    table[negotiation_id] = Negotiation(
        **{
            **{f: getattr(table[negotiation_id], f) for f in Negotiation.__slots__},
            "status": "rejected",
        }
    )

    with pytest.raises(NegotiationClosed):
        await negotiations.counter("agt_1", negotiation_id, CounterRequest())
