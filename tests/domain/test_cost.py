"""The cost of a session: itemised, rounded once, never above the cap."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from station.domain.cost import CostKind, Usage, session_cost
from station.domain.money import Money
from station.domain.tariff import Tariff

prices = st.decimals(min_value=0, max_value=5, places=4)
fees = st.decimals(min_value=0, max_value=20, places=2)
energies = st.decimals(min_value=0, max_value=200_000, places=3)
seconds = st.decimals(min_value=0, max_value=86_400, places=0)


@st.composite
def tariffs(draw: st.DrawFn) -> Tariff:
    min_cost = draw(st.none() | fees)
    max_cost = draw(st.none() | st.decimals(min_value=20, max_value=500, places=2))
    return Tariff(
        currency="usd",
        energy_price_per_kwh=draw(prices),
        session_fee=draw(fees),
        time_price_per_hour=draw(st.decimals(min_value=0, max_value=10, places=2)),
        idle_fee_per_minute=draw(st.decimals(min_value=0, max_value=1, places=2)),
        idle_grace_minutes=draw(st.integers(0, 30)),
        min_cost=min_cost,
        max_cost=max_cost,
    )


def test_a_plain_session_costs_energy_plus_the_fee() -> None:
    tariff = Tariff("usd", Decimal("0.4500"), session_fee=Decimal("0.50"))

    cost = session_cost(tariff, Usage(energy_wh=Decimal("31204")))

    assert cost.total == Money(Decimal("14.54"), "usd")
    assert [(line.kind, line.amount.to_wire()) for line in cost.lines] == [
        (CostKind.ENERGY, "14.04"),
        (CostKind.SESSION_FEE, "0.50"),
    ]


def test_idle_time_is_charged_only_past_the_grace_period() -> None:
    tariff = Tariff("usd", Decimal(0), idle_fee_per_minute=Decimal("0.10"), idle_grace_minutes=10)

    within = session_cost(tariff, Usage(Decimal(0), idle_seconds=Decimal(600)))
    past = session_cost(tariff, Usage(Decimal(0), idle_seconds=Decimal(900)))

    assert within.total.amount == 0
    assert past.total.amount == Decimal("0.50")


def test_the_cap_shows_as_a_negative_line() -> None:
    tariff = Tariff("usd", Decimal("0.50"))

    cost = session_cost(tariff, Usage(Decimal(100_000)), cap=Money(Decimal("25.00"), "usd"))

    assert cost.total.amount == Decimal("25.00")
    assert cost.uncapped.amount == Decimal("50.00")
    assert cost.lines[-1].kind is CostKind.CAP
    assert cost.capped


@settings(max_examples=1000)
@given(tariffs(), energies, seconds, seconds)
def test_lines_sum_to_the_total_and_it_is_never_negative(
    tariff: Tariff, energy_wh: Decimal, charging_s: Decimal, idle_s: Decimal
) -> None:
    cost = session_cost(tariff, Usage(energy_wh, charging_s, idle_s))

    assert sum((line.amount.amount for line in cost.lines), Decimal(0)) == cost.total.amount
    assert cost.total.amount >= 0
    assert cost.total == cost.total.rounded()


@settings(max_examples=1000)
@given(tariffs(), energies, energies, seconds)
def test_cost_is_monotonic_in_energy(
    tariff: Tariff, a_wh: Decimal, b_wh: Decimal, charging_s: Decimal
) -> None:
    low, high = sorted((a_wh, b_wh))

    assert (
        session_cost(tariff, Usage(low, charging_s)).total
        <= session_cost(tariff, Usage(high, charging_s)).total
    )


@settings(max_examples=1000)
@given(tariffs(), energies, seconds, st.decimals(min_value=0, max_value=100, places=2))
def test_never_above_the_cap(
    tariff: Tariff, energy_wh: Decimal, charging_s: Decimal, cap_amount: Decimal
) -> None:
    cap = Money(cap_amount, "usd")

    cost = session_cost(tariff, Usage(energy_wh, charging_s), cap=cap)

    assert cost.total <= cap
    assert sum((line.amount.amount for line in cost.lines), Decimal(0)) == cost.total.amount
