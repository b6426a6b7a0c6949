"""The agent's own estimate of what a session will cost under a tariff.

Session fee + energy × price + time at the charging power × time price,
rounded once, half-up. Idle fees are left out: the agent leaves within the
grace period. The agent trusts its own estimate, and takes the higher of it
and the station's `estimated_cost` when judging an offer.
"""

from __future__ import annotations

from decimal import Decimal

from vehicle.goal import DEFAULT_POWER_KW, Goal
from vehicle.money import Money
from vehicle.terms import Offer, Tariff


def charging_power_kw(goal: Goal, tariff: Tariff) -> Decimal:
    """The steady power the session will run at: the lower of car and tariff."""
    limits = [p for p in (goal.max_power_kw, tariff.max_power_kw) if p is not None]
    return min(limits) if limits else DEFAULT_POWER_KW


def estimate_cost(goal: Goal, tariff: Tariff) -> Money:
    hours = goal.charge_hours(charging_power_kw(goal, tariff))
    amount = (
        tariff.session_fee
        + goal.energy_kwh * tariff.energy_price_per_kwh
        + hours * tariff.time_price_per_hour
    )
    if tariff.min_cost is not None:
        amount = max(amount, tariff.min_cost)
    if tariff.max_cost is not None:
        amount = min(amount, tariff.max_cost)
    return Money(amount, tariff.currency).rounded()


def judged_cost(goal: Goal, offer: Offer) -> Money:
    """The cost the agent holds an offer to: its own estimate or the station's, the higher."""
    return estimate_cost(goal, offer.tariff).max(offer.estimated_cost)
