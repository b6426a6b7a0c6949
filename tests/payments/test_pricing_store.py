"""Stored tariffs and pricing policies: per charge point, else the default, else Settings."""

from __future__ import annotations

from decimal import Decimal

from station.domain.negotiation import PriceBand, PricingPolicy
from station.domain.tariff import Tariff
from station.services.pricing import effective_policy
from station.settings import Settings
from station.store import payments as store
from station.store.db import Database
from station.store.unit_of_work import SqlUnitOfWork

SETTINGS = Settings(database_url="sqlite+aiosqlite:///unused.db", negotiation_max_rounds=4)
DEFAULT = Tariff("usd", Decimal("0.5000"), session_fee=Decimal("1.00"), tariff_id="std")
CP_TARIFF = Tariff("usd", Decimal("0.6100"), max_cost=Decimal("60.00"), tariff_id="fast")
POLICY = PricingPolicy(
    currency="usd",
    list_price_per_kwh=Decimal("0.55"),
    floor_price_per_kwh=Decimal("0.35"),
    time_of_day=(PriceBand(0, Decimal("0.9")), PriceBand(17, Decimal("1.2"))),
    concession=Decimal("0.25"),
    max_rounds=3,
)


async def test_without_anything_stored_the_settings_decide(db: Database) -> None:
    async with db.reader() as session:
        policy = await effective_policy(SqlUnitOfWork.bound(session), SETTINGS, "CP-1")

    assert (policy.list_price_per_kwh, policy.floor_price_per_kwh) == (
        Decimal("0.45"),
        Decimal("0.30"),
    )
    assert (policy.session_fee, policy.max_rounds) == (Decimal("0.50"), 4)


async def test_a_charge_points_tariff_wins_over_the_default(db: Database) -> None:
    async with db.session() as session:
        await store.set_tariff(session, DEFAULT)
        await store.set_tariff(session, CP_TARIFF, "CP-1")

    async with db.reader() as session:
        own = await store.get_tariff(session, "CP-1")
        other = await store.get_tariff(session, "CP-2")
        listed = await store.list_tariffs(session)

    assert (own, other) == (CP_TARIFF, DEFAULT)
    assert set(listed) == {"*", "CP-1"}


async def test_a_stored_policy_round_trips_and_takes_the_tariffs_prices(db: Database) -> None:
    async with db.session() as session:
        await store.set_policy(session, POLICY)
        await store.set_tariff(session, CP_TARIFF, "CP-1")
        await store.set_policy(session, POLICY)  # replacing is fine

    async with db.reader() as session:
        stored = await store.get_policy(session, "CP-9")
        effective = await effective_policy(SqlUnitOfWork.bound(session), SETTINGS, "CP-1")

    assert stored == POLICY
    assert effective.list_price_per_kwh == Decimal("0.6100")
    assert effective.floor_price_per_kwh == Decimal("0.35")
    assert effective.max_cost == Decimal("60.00") and effective.tariff_id == "fast"


async def test_deleting_a_charge_points_tariff_falls_back_to_the_default(db: Database) -> None:
    async with db.session() as session:
        await store.set_tariff(session, DEFAULT)
        await store.set_tariff(session, CP_TARIFF, "CP-1")
        deleted = await store.delete_tariff(session, "CP-1")
        again = await store.delete_tariff(session, "CP-1")

    async with db.reader() as session:
        tariff = await store.get_tariff(session, "CP-1")

    assert (deleted, again, tariff) == (True, False, DEFAULT)
