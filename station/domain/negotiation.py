"""The station's pricing policy and the rules of a negotiation.

A bounded alternating-offers protocol. The policy has a list price and a
floor per kWh; the station's ask starts at the list price (scaled by a
time-of-day curve), is discounted for flexibility the agent offers (a later
departure, a lower power) and concedes toward the floor over rounds. It
never offers, nor agrees to, an energy price below the floor.

`opening(policy, terms, now)` prices the first round; `respond(...)` decides
what a counter-offer gets: ``agreed`` (taken as is), ``open`` (a new offer)
or ``rejected`` (final). Pure: the caller persists and signs.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_CEILING, Decimal
from enum import StrEnum

from station.domain.cost import Usage, session_cost
from station.domain.money import Money, MoneyError
from station.domain.tariff import Tariff

_Q4 = Decimal("0.0001")
ONE = Decimal(1)


class NegotiationStatus(StrEnum):
    OPEN = "open"
    AGREED = "agreed"
    REJECTED = "rejected"


@dataclass(frozen=True, slots=True)
class PriceBand:
    """From `start_hour` (UTC, 0–23) until the next band, the list price × `multiplier`."""

    start_hour: int
    multiplier: Decimal


@dataclass(frozen=True, slots=True)
class PricingPolicy:
    currency: str
    list_price_per_kwh: Decimal
    floor_price_per_kwh: Decimal
    session_fee: Decimal = Decimal(0)
    time_price_per_hour: Decimal = Decimal(0)
    idle_fee_per_minute: Decimal = Decimal("0.10")
    idle_grace_minutes: int = 10
    max_power_kw: Decimal = Decimal(150)
    min_cost: Decimal | None = None
    max_cost: Decimal | None = None
    # Time-of-day curve; empty = flat.
    time_of_day: tuple[PriceBand, ...] = ()
    # Up to this fraction off for a departure later than needed (per slack hour: 1/8 of it).
    max_departure_discount: Decimal = Decimal("0.08")
    # Up to this fraction off for a power limit below the station's maximum.
    max_power_discount: Decimal = Decimal("0.08")
    # Share of the remaining gap to the floor conceded each round.
    concession: Decimal = Decimal("0.35")
    max_rounds: int = 5
    # recommended_cap = estimate × (1 + cap_margin), rounded.
    cap_margin: Decimal = Decimal("0.10")
    tariff_id: str = "default"
    flags: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.floor_price_per_kwh <= 0 or self.list_price_per_kwh < self.floor_price_per_kwh:
            raise MoneyError("need 0 < floor_price_per_kwh <= list_price_per_kwh")
        if not (Decimal(0) <= self.concession <= ONE):
            raise MoneyError("concession is a fraction in [0, 1]")
        if self.max_rounds < 1:
            raise MoneyError("max_rounds must be at least 1")
        for band in self.time_of_day:
            if not 0 <= band.start_hour <= 23 or band.multiplier <= 0:
                raise MoneyError("time-of-day bands need an hour 0–23 and a positive multiplier")

    def list_tariff(self) -> Tariff:
        return Tariff(
            currency=self.currency,
            energy_price_per_kwh=self.list_price_per_kwh,
            session_fee=self.session_fee,
            time_price_per_hour=self.time_price_per_hour,
            idle_fee_per_minute=self.idle_fee_per_minute,
            idle_grace_minutes=self.idle_grace_minutes,
            max_power_kw=self.max_power_kw,
            min_cost=self.min_cost,
            max_cost=self.max_cost,
            tariff_id=self.tariff_id,
        )

    def with_list_tariff(self, tariff: Tariff) -> PricingPolicy:
        """The policy with the list price and other components of a stored tariff."""
        return replace(
            self,
            currency=tariff.currency,
            list_price_per_kwh=max(tariff.energy_price_per_kwh, self.floor_price_per_kwh),
            session_fee=tariff.session_fee,
            time_price_per_hour=tariff.time_price_per_hour,
            idle_fee_per_minute=tariff.idle_fee_per_minute,
            idle_grace_minutes=tariff.idle_grace_minutes,
            max_power_kw=tariff.max_power_kw or self.max_power_kw,
            min_cost=tariff.min_cost,
            max_cost=tariff.max_cost,
            tariff_id=tariff.tariff_id,
        )


@dataclass(frozen=True, slots=True)
class Terms:
    """What the agent asks for."""

    energy_kwh: Decimal
    max_power_kw: Decimal | None = None
    departure_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Offer:
    round: int
    tariff: Tariff
    estimated_cost: Money
    recommended_cap: Money


@dataclass(frozen=True, slots=True)
class Decision:
    status: NegotiationStatus
    offer: Offer | None
    detail: str | None = None


def time_of_day_multiplier(policy: PricingPolicy, now: datetime) -> Decimal:
    bands = sorted(policy.time_of_day, key=lambda b: b.start_hour)
    if not bands:
        return ONE
    current = bands[-1]  # wraps around midnight
    for band in bands:
        if band.start_hour <= now.hour:
            current = band
    return current.multiplier


def flexibility_discount(policy: PricingPolicy, terms: Terms, now: datetime) -> Decimal:
    """The fraction off the ask for the flexibility in `terms` (0 ≤ d < 1)."""
    station_kw = policy.max_power_kw
    power_kw = min(terms.max_power_kw or station_kw, station_kw)
    discount = Decimal(0)
    if power_kw < station_kw:
        discount += policy.max_power_discount * (station_kw - power_kw) / station_kw
    if terms.departure_at is not None and power_kw > 0:
        needed_h = terms.energy_kwh / power_kw
        available_h = Decimal((terms.departure_at - now).total_seconds()) / 3600
        slack_h = max(available_h - needed_h, Decimal(0))
        discount += min(policy.max_departure_discount, policy.max_departure_discount * slack_h / 8)
    return min(discount, Decimal("0.99"))


def ask_price(policy: PricingPolicy, terms: Terms, now: datetime, round_: int) -> Decimal:
    """The station's energy price for `round_` (1-based): never below the floor."""
    floor = policy.floor_price_per_kwh
    target = policy.list_price_per_kwh * time_of_day_multiplier(policy, now)
    target *= ONE - flexibility_discount(policy, terms, now)
    target = max(target, floor)
    kept = ONE if round_ <= 1 else (ONE - policy.concession) ** (round_ - 1)
    price = floor + (target - floor) * kept
    # Round up to 4 places: a rounding can only move the price away from the floor.
    return max(price.quantize(_Q4, ROUND_CEILING), floor)


def make_offer(
    policy: PricingPolicy, terms: Terms, now: datetime, round_: int, price: Decimal
) -> Offer:
    if price < policy.floor_price_per_kwh:
        raise MoneyError("an offer below the floor")
    tariff = policy.list_tariff().with_energy_price(price)
    if terms.max_power_kw is not None and terms.max_power_kw < policy.max_power_kw:
        tariff = replace(tariff, max_power_kw=terms.max_power_kw)
    estimate = estimate_cost(tariff, terms)
    cap = Money(estimate.amount * (ONE + policy.cap_margin), policy.currency).rounded()
    return Offer(round_, tariff, estimate, cap.max(tariff.minimum))


def estimate_cost(tariff: Tariff, terms: Terms) -> Money:
    power_kw = tariff.max_power_kw or Decimal(50)
    hours = terms.energy_kwh / power_kw if power_kw > 0 else Decimal(0)
    usage = Usage(energy_wh=terms.energy_kwh * 1000, charging_seconds=hours * 3600)
    return session_cost(tariff, usage).total


def opening(policy: PricingPolicy, terms: Terms, now: datetime) -> Offer:
    return make_offer(policy, terms, now, 1, ask_price(policy, terms, now, 1))


def respond(
    policy: PricingPolicy,
    terms: Terms,
    now: datetime,
    round_: int,
    counter_price: Decimal | None,
) -> Decision:
    """The station's answer to a counter made against the offer of `round_`.

    `terms` already include the flexibility the counter offers. A counter
    price at or above the next ask is agreed as is; otherwise the station
    concedes one round, or — past its last round — rejects.
    """
    next_round = round_ + 1
    if counter_price is not None and counter_price <= 0:
        return Decision(NegotiationStatus.REJECTED, None, "counter price must be positive")
    next_ask = ask_price(policy, terms, now, next_round)
    acceptable = min(next_ask, policy.list_price_per_kwh)
    if counter_price is not None and counter_price >= max(acceptable, policy.floor_price_per_kwh):
        return Decision(
            NegotiationStatus.AGREED, make_offer(policy, terms, now, round_, counter_price)
        )
    if next_round > policy.max_rounds:
        return Decision(
            NegotiationStatus.REJECTED,
            None,
            f"no agreement within {policy.max_rounds} rounds",
        )
    return Decision(NegotiationStatus.OPEN, make_offer(policy, terms, now, next_round, next_ask))
