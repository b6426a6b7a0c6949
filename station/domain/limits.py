"""Spending limits: may an agent hold this much more money? Pure arithmetic.

An agent has a per-session limit and a rolling window limit (at most
``limit_per_window`` across the holds and captures it started in the last
``window_hours``). `decide()` takes what the window already holds and answers
with a `LimitDecision`: allowed or not, and the allowance that remains — the
figure a refusal reports back to the agent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal

from station.domain.money import check_currency

ZERO = Decimal(0)


class LimitsError(ValueError):
    """Limits that make no sense (negative amounts, an empty window)."""


@dataclass(frozen=True, slots=True)
class SpendingLimits:
    currency: str
    limit_per_session: Decimal
    limit_per_window: Decimal
    window_hours: int

    def __post_init__(self) -> None:
        check_currency(self.currency)
        if self.limit_per_session < 0 or self.limit_per_window < 0:
            raise LimitsError("limits must not be negative")
        if self.window_hours <= 0:
            raise LimitsError("window_hours must be positive")

    def window_start(self, now: datetime) -> datetime:
        """Holds started at or after this instant count against the window."""
        return now - timedelta(hours=self.window_hours)


@dataclass(frozen=True, slots=True)
class LimitDecision:
    allowed: bool
    # What the agent could still hold in one session right now (never negative).
    remaining: Decimal
    reason: str | None = None


def remaining_allowance(limits: SpendingLimits, spent_in_window: Decimal) -> Decimal:
    """The most one new session may hold: the smaller of both limits' headroom."""
    window_left = max(limits.limit_per_window - spent_in_window, ZERO)
    return min(limits.limit_per_session, window_left)


def decide(
    limits: SpendingLimits, *, spent_in_window: Decimal, amount: Decimal, currency: str
) -> LimitDecision:
    """May the agent hold `amount` more, given what its window already holds?"""
    if amount < 0:
        raise LimitsError("amount must not be negative")
    remaining = remaining_allowance(limits, spent_in_window)
    if currency != limits.currency:
        return LimitDecision(False, remaining, f"agent pays in {limits.currency}, not {currency}")
    if amount > limits.limit_per_session:
        return LimitDecision(False, remaining, "amount exceeds the per-session limit")
    if amount > remaining:
        return LimitDecision(False, remaining, "amount exceeds what is left in the window")
    return LimitDecision(True, remaining - amount)
