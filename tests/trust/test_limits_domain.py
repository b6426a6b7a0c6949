"""Spending limits, pure: never allow past a limit, report what remains."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from station.domain.limits import LimitsError, SpendingLimits, decide, remaining_allowance

money = st.decimals(min_value=0, max_value=10_000, places=2, allow_nan=False)
LIMITS = SpendingLimits("usd", Decimal("50.00"), Decimal("200.00"), 24)


@given(session=money, window=money, spent=money, amount=money)
def test_an_allowed_amount_never_passes_either_limit(
    session: Decimal, window: Decimal, spent: Decimal, amount: Decimal
) -> None:
    limits = SpendingLimits("usd", session, window, 24)

    decision = decide(limits, spent_in_window=spent, amount=amount, currency="usd")

    if decision.allowed:
        assert amount <= session
        assert amount == 0 or spent + amount <= window
    assert decision.remaining >= 0


@given(spent=money, amount=money)
def test_allowed_exactly_when_within_the_remaining_allowance(
    spent: Decimal, amount: Decimal
) -> None:
    remaining = remaining_allowance(LIMITS, spent)

    decision = decide(LIMITS, spent_in_window=spent, amount=amount, currency="usd")

    assert decision.allowed == (amount <= remaining)
    assert decision.remaining == (remaining - amount if decision.allowed else remaining)


def test_a_refusal_reports_what_is_left_in_the_window() -> None:
    decision = decide(
        LIMITS, spent_in_window=Decimal("180.00"), amount=Decimal("25.00"), currency="usd"
    )

    assert not decision.allowed
    assert decision.remaining == Decimal("20.00")


def test_another_currency_is_refused() -> None:
    decision = decide(LIMITS, spent_in_window=Decimal(0), amount=Decimal("1"), currency="eur")

    assert not decision.allowed


def test_the_window_reaches_back_window_hours() -> None:
    now = datetime(2026, 11, 22, 12, tzinfo=UTC)

    assert LIMITS.window_start(now) == now - timedelta(hours=24)


@pytest.mark.parametrize(
    ("session", "window", "hours"),
    [(Decimal(-1), Decimal(1), 1), (Decimal(1), Decimal(-1), 1), (Decimal(1), Decimal(1), 0)],
)
def test_nonsense_limits_are_refused(session: Decimal, window: Decimal, hours: int) -> None:
    with pytest.raises(LimitsError):
        SpendingLimits("usd", session, window, hours)
