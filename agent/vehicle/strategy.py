"""Negotiation strategy: a pure decision per station reply.

The agent's **reservation price** (the most it pays per kWh) comes from its
budget: what is left of the budget after the session fee and the time charge,
per kWh. A relaxed car holds out for less (`RELAXED_SHARE` of that price); an
urgent car accepts up to all of it. The agent opens at `ASPIRATION_SHARE` of
its reservation price and concedes toward it over the rounds — a conceder
when urgent (early large steps), a Boulware when relaxed (holds, then moves
late). A car with slack before departure offers its flexibility — a lower
power and its real departure time — to buy a discount.

Invariant (tested with hypothesis): `Accept` is only ever returned for an
offer whose price is at most the reservation price and whose judged cost is
within the budget; a `Counter` never names a price above the reservation.
In the last round an offer within bounds is taken; one out of bounds gets a
final counter at the reservation price (the station agrees or rejects).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_DOWN, Decimal

from vehicle.estimate import charging_power_kw, judged_cost
from vehicle.goal import DEFAULT_POWER_KW, Goal
from vehicle.money import Money, minor_unit_exponent
from vehicle.terms import NegotiationReply, NegotiationStatus, Offer, Tariff

PRICE_PLACES = Decimal("0.0001")  # prices per kWh carry up to 4 decimals
RELAXED_SHARE = Decimal("0.85")
ASPIRATION_SHARE = Decimal("0.70")
CAP_MARGIN = Decimal("1.10")  # headroom of the hold over the estimate
FLEXIBLE_BELOW = Decimal("0.5")  # urgency under which the car offers flexibility
POWER_MARGIN = Decimal("1.25")  # a flexible car still asks for 25 % more than it needs
MIN_OFFERED_POWER_KW = Decimal(11)  # never offer to charge slower than a wallbox
_ZERO = Decimal(0)
_ONE = Decimal(1)


@dataclass(frozen=True, slots=True)
class CounterTerms:
    energy_price_per_kwh: Decimal | None = None
    max_power_kw: Decimal | None = None
    departure_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Accept:
    offer: Offer
    estimated_cost: Money
    cap: Money


@dataclass(frozen=True, slots=True)
class Counter:
    terms: CounterTerms


@dataclass(frozen=True, slots=True)
class WalkAway:
    reason: str


Move = Accept | Counter | WalkAway


@dataclass(frozen=True, slots=True)
class Strategy:
    """The agent's negotiating stance for one goal at one moment (`urgency` 0…1)."""

    goal: Goal
    urgency: Decimal

    @classmethod
    def for_goal(cls, goal: Goal, now: datetime) -> Strategy:
        return cls(goal, goal.urgency(now))

    def __post_init__(self) -> None:
        if not _ZERO <= self.urgency <= _ONE:
            raise ValueError(f"urgency must be within 0…1, got {self.urgency}")

    def budget_price(self, tariff: Tariff) -> Decimal:
        """Price per kWh at which the whole budget is spent (never negative)."""
        goal = self.goal
        hours = goal.charge_hours(charging_power_kw(goal, tariff))
        left = goal.budget.amount - tariff.session_fee - hours * tariff.time_price_per_hour
        return max(left / goal.energy_kwh, _ZERO).quantize(PRICE_PLACES, ROUND_DOWN)

    def reservation_price(self, tariff: Tariff) -> Decimal:
        share = RELAXED_SHARE + (_ONE - RELAXED_SHARE) * self.urgency
        return (self.budget_price(tariff) * share).quantize(PRICE_PLACES, ROUND_DOWN)

    def target_price(self, tariff: Tariff, round_: int, max_rounds: int) -> Decimal:
        """The price the agent asks for after station round `round_` (non-decreasing)."""
        reservation = self.reservation_price(tariff)
        aspiration = reservation * ASPIRATION_SHARE
        # round 1 asks the aspiration, the last round the reservation price
        progress = (
            min(Decimal(round_ - 1) / Decimal(max_rounds - 1), _ONE) if max_rounds > 1 else _ONE
        )
        progress = max(progress, _ZERO)
        # exponent 1/beta: beta 0.5 (relaxed, Boulware) … 3 (urgent, conceder)
        beta = Decimal("0.5") + Decimal("2.5") * self.urgency
        conceded = progress ** (_ONE / beta) if progress > 0 else _ZERO
        target = aspiration + (reservation - aspiration) * conceded
        return min(target.quantize(PRICE_PLACES, ROUND_DOWN), reservation)

    def acceptable(self, offer: Offer) -> str | None:
        """Why the offer is out of bounds, or None when it may be accepted."""
        goal = self.goal
        if offer.tariff.currency != goal.currency:
            return f"offer in {offer.tariff.currency}, budget in {goal.currency}"
        cost = judged_cost(goal, offer)
        if cost > goal.budget:
            return f"estimated cost {cost.to_wire()} exceeds the budget {goal.budget.to_wire()}"
        reservation = self.reservation_price(offer.tariff)
        if offer.tariff.energy_price_per_kwh > reservation:
            return (
                f"price {offer.tariff.energy_price_per_kwh}/kWh above the reservation "
                f"price {reservation}/kWh"
            )
        return None

    def choose_cap(self, offer: Offer) -> Money:
        """The hold to authorise: room over the estimate, never above the budget."""
        cost = judged_cost(self.goal, offer)
        wanted = Money(cost.amount * CAP_MARGIN, cost.currency)
        if offer.recommended_cap is not None:
            wanted = wanted.max(offer.recommended_cap)
        quantum = Decimal(1).scaleb(-minor_unit_exponent(cost.currency))
        ceiling = wanted.amount.quantize(quantum, ROUND_CEILING)
        return Money(ceiling, cost.currency).min(self.goal.budget).max(cost)

    def flexibility(self, offer: Offer, now: datetime) -> tuple[Decimal | None, datetime | None]:
        """Lower power and the real departure time, when the car has slack to give."""
        goal = self.goal
        available = goal.available_hours(now)
        if self.urgency >= FLEXIBLE_BELOW or available is None or available <= 0:
            return None, None
        needed_kw = (goal.energy_kwh / available * POWER_MARGIN).quantize(
            Decimal("0.1"), ROUND_CEILING
        )
        needed_kw = max(needed_kw, MIN_OFFERED_POWER_KW)
        current = charging_power_kw(goal, offer.tariff)
        power = needed_kw if needed_kw < current else None
        return power, goal.departure_at

    def decide(self, reply: NegotiationReply, now: datetime) -> Move:
        """Accept the offer, counter it, or walk away."""
        if reply.status is NegotiationStatus.REJECTED or reply.offer is None:
            return WalkAway(f"station rejected: {reply.detail or 'no reason given'}")
        offer = reply.offer
        if offer.valid_until <= now:
            return WalkAway("offer expired")
        refusal = self.acceptable(offer)
        price = offer.tariff.energy_price_per_kwh
        target = self.target_price(offer.tariff, reply.round, reply.max_rounds)
        final = reply.last_round or not reply.can_counter
        if refusal is None and (price <= target or final):
            return Accept(offer, judged_cost(self.goal, offer), self.choose_cap(offer))
        if not reply.can_counter:
            return WalkAway(refusal or "no rounds left")
        # At the last round a counter is take-it-or-leave-it at the reservation
        # price (the target there): better than walking away with nothing.
        if self.budget_price(offer.tariff) <= 0:
            return WalkAway("the fixed charges alone exceed the budget")
        power, departure = self.flexibility(offer, now)
        return Counter(CounterTerms(min(target, price), power, departure))


def best(accepts: list[Accept]) -> Accept | None:
    """The cheapest deal by judged cost (ties: the lower price per kWh)."""
    if not accepts:
        return None
    return min(
        accepts,
        key=lambda a: (a.estimated_cost.amount, a.offer.tariff.energy_price_per_kwh),
    )


__all__ = [
    "DEFAULT_POWER_KW",
    "Accept",
    "Counter",
    "CounterTerms",
    "Move",
    "Strategy",
    "WalkAway",
    "best",
]
