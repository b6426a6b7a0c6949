"""The pricing policy: concedes over rounds, rewards flexibility, never below its floor."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from station.domain.negotiation import (
    NegotiationStatus,
    PriceBand,
    PricingPolicy,
    Terms,
    ask_price,
    opening,
    respond,
)

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
POLICY = PricingPolicy(
    currency="usd",
    list_price_per_kwh=Decimal("0.45"),
    floor_price_per_kwh=Decimal("0.30"),
    session_fee=Decimal("0.50"),
)
TERMS = Terms(energy_kwh=Decimal(40))


def test_the_opening_offer_is_the_list_price() -> None:
    offer = opening(POLICY, TERMS, NOW)

    assert offer.tariff.energy_price_per_kwh == Decimal("0.4500")
    assert offer.estimated_cost.amount == Decimal("18.50")
    assert offer.recommended_cap.amount == Decimal("20.35")


def test_the_station_concedes_over_rounds() -> None:
    asks = [ask_price(POLICY, TERMS, NOW, r) for r in range(1, 6)]

    assert asks == sorted(asks, reverse=True)
    assert asks[0] > asks[-1] >= POLICY.floor_price_per_kwh


def test_flexibility_buys_a_discount() -> None:
    flexible = Terms(Decimal(40), max_power_kw=Decimal(50), departure_at=NOW + timedelta(hours=9))

    assert ask_price(POLICY, flexible, NOW, 1) < ask_price(POLICY, TERMS, NOW, 1)


def test_peak_hours_cost_more() -> None:
    policy = PricingPolicy(
        currency="usd",
        list_price_per_kwh=Decimal("0.45"),
        floor_price_per_kwh=Decimal("0.30"),
        time_of_day=(PriceBand(0, Decimal("0.8")), PriceBand(17, Decimal("1.2"))),
    )

    assert ask_price(policy, TERMS, NOW.replace(hour=18), 1) == Decimal("0.5400")
    assert ask_price(policy, TERMS, NOW.replace(hour=3), 1) == Decimal("0.3600")


def test_a_counter_at_the_next_ask_is_agreed_as_is() -> None:
    price = ask_price(POLICY, TERMS, NOW, 2)

    decision = respond(POLICY, TERMS, NOW, 1, price)

    assert decision.status is NegotiationStatus.AGREED
    assert decision.offer is not None and decision.offer.tariff.energy_price_per_kwh == price


def test_a_lowball_counter_gets_a_new_offer_then_a_final_rejection() -> None:
    opened = respond(POLICY, TERMS, NOW, 1, Decimal("0.10"))
    last = respond(POLICY, TERMS, NOW, POLICY.max_rounds, Decimal("0.10"))

    assert opened.status is NegotiationStatus.OPEN and opened.offer is not None
    assert opened.offer.round == 2
    assert last.status is NegotiationStatus.REJECTED and last.detail


policies = st.builds(
    lambda floor, extra, concession, bands: PricingPolicy(
        currency="usd",
        list_price_per_kwh=floor + extra,
        floor_price_per_kwh=floor,
        concession=concession,
        time_of_day=bands,
    ),
    st.decimals(min_value="0.01", max_value=2, places=4),
    st.decimals(min_value=0, max_value=2, places=4),
    st.decimals(min_value=0, max_value=1, places=2),
    st.lists(
        st.builds(
            PriceBand, st.integers(0, 23), st.decimals(min_value="0.1", max_value=3, places=2)
        ),
        max_size=4,
    ).map(tuple),
)
terms = st.builds(
    Terms,
    st.decimals(min_value="0.1", max_value=200, places=3),
    st.none() | st.decimals(min_value=1, max_value=400, places=1),
    st.none() | st.integers(-3600, 48 * 3600).map(lambda s: NOW + timedelta(seconds=s)),
)


counters = st.none() | st.decimals(0, 3, places=4)


@settings(max_examples=1000)
@given(policies, terms, st.integers(0, 23), st.integers(1, 50), counters)
def test_never_offers_nor_agrees_below_the_floor(
    policy: PricingPolicy, terms: Terms, hour: int, round_: int, counter: Decimal | None
) -> None:
    now = NOW.replace(hour=hour)

    ask = ask_price(policy, terms, now, round_)
    decision = respond(policy, terms, now, round_, counter)

    assert ask >= policy.floor_price_per_kwh
    if decision.offer is not None:
        assert decision.offer.tariff.energy_price_per_kwh >= policy.floor_price_per_kwh
        assert decision.offer.recommended_cap >= decision.offer.estimated_cost
