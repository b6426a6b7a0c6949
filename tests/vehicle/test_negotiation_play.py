"""The agent's strategy played against the station's own pricing policy, in memory.

Both sides are pure (`vehicle.strategy`, `station.domain.negotiation`), so a
whole negotiation runs in microseconds and hypothesis can play thousands.
"""

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from station.domain.negotiation import (
    NegotiationStatus,
    PricingPolicy,
    Terms,
    ask_price,
    opening,
    respond,
)
from station.domain.negotiation import Offer as StationOffer
from vehicle.goal import Goal
from vehicle.money import Money
from vehicle.strategy import Accept, Counter, Move, Strategy, WalkAway
from vehicle.terms import NegotiationReply

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def reply(status: str, offer: StationOffer | None, max_rounds: int) -> NegotiationReply:
    doc: dict[str, Any] = {"negotiation_id": "neg_1", "status": status, "max_rounds": max_rounds}
    if offer is not None:
        doc["round"] = offer.round
        doc["offer"] = {
            "offer_id": f"off_{offer.round}",
            "valid_until": (NOW + timedelta(minutes=5)).isoformat(),
            "tariff": offer.tariff.to_wire(),
            "estimated_cost": offer.estimated_cost.to_wire(),
            "recommended_cap": offer.recommended_cap.to_wire(),
        }
    else:
        doc["round"] = max_rounds + 1
    return NegotiationReply.from_wire(doc)


def play(policy: PricingPolicy, goal: Goal, urgency: Decimal) -> tuple[Move, Terms, int]:
    """Negotiate to the end; the agent's last move, the final terms, counters made."""
    strategy = Strategy(goal, urgency)
    terms = Terms(goal.energy_kwh, goal.max_power_kw, goal.departure_at)
    offer: StationOffer | None = opening(policy, terms, NOW)
    status, counters = "open", 0
    while True:
        move = strategy.decide(reply(status, offer, policy.max_rounds), NOW)
        if not isinstance(move, Counter):
            return move, terms, counters
        counters += 1
        assert offer is not None
        terms = replace(
            terms,
            max_power_kw=move.terms.max_power_kw or terms.max_power_kw,
            departure_at=move.terms.departure_at or terms.departure_at,
        )
        decision = respond(policy, terms, NOW, offer.round, move.terms.energy_price_per_kwh)
        status, offer = decision.status.value, decision.offer
        if decision.status is NegotiationStatus.REJECTED:
            offer = None


policies = st.builds(
    lambda list_price, floor_share, fee, concession, rounds: PricingPolicy(
        currency="usd",
        list_price_per_kwh=list_price,
        floor_price_per_kwh=max(
            (list_price * floor_share).quantize(Decimal("0.0001")), Decimal("0.01")
        ),
        session_fee=fee,
        concession=concession,
        max_rounds=rounds,
    ),
    list_price=st.decimals(min_value=Decimal("0.20"), max_value=Decimal("0.90"), places=4),
    floor_share=st.decimals(min_value=Decimal("0.4"), max_value=Decimal("1"), places=2),
    fee=st.decimals(min_value=Decimal(0), max_value=Decimal(2), places=2),
    concession=st.decimals(min_value=Decimal("0.1"), max_value=Decimal("0.6"), places=2),
    rounds=st.integers(min_value=1, max_value=6),
)
goals = st.builds(
    lambda energy, budget, hours, power: Goal(
        energy,
        Money(budget, "usd"),
        NOW + timedelta(hours=hours) if hours is not None else None,
        power,
    ),
    energy=st.decimals(min_value=Decimal(5), max_value=Decimal(80), places=1),
    budget=st.decimals(min_value=Decimal(2), max_value=Decimal(60), places=2),
    hours=st.none() | st.floats(min_value=0.25, max_value=12),
    power=st.none() | st.sampled_from([Decimal(11), Decimal(50), Decimal(150)]),
)
urgencies = st.decimals(min_value=Decimal(0), max_value=Decimal(1), places=2)


@settings(max_examples=500, deadline=None)
@given(policy=policies, goal=goals, urgency=urgencies)
def test_a_deal_is_within_both_sides_limits(
    policy: PricingPolicy, goal: Goal, urgency: Decimal
) -> None:
    move, _, counters = play(policy, goal, urgency)

    assert counters <= policy.max_rounds
    if isinstance(move, Accept):
        price = move.offer.tariff.energy_price_per_kwh
        assert policy.floor_price_per_kwh <= price
        assert price <= Strategy(goal, urgency).reservation_price(move.offer.tariff)
        assert move.estimated_cost <= move.cap <= goal.budget


@settings(max_examples=500, deadline=None)
@given(policy=policies, goal=goals, urgency=urgencies)
def test_a_deal_is_reached_whenever_the_station_would_take_the_reservation_price(
    policy: PricingPolicy, goal: Goal, urgency: Decimal
) -> None:
    """If the station's last ask is within the agent's limit, they never part without a deal."""
    strategy = Strategy(goal, urgency)
    terms = Terms(goal.energy_kwh, goal.max_power_kw, goal.departure_at)
    list_tariff = reply("open", opening(policy, terms, NOW), policy.max_rounds).offer
    assert list_tariff is not None
    reservation = strategy.reservation_price(list_tariff.tariff)
    last_ask = ask_price(policy, terms, NOW, policy.max_rounds + 1)

    move, _, _ = play(policy, goal, urgency)

    if reservation >= min(last_ask, policy.list_price_per_kwh):
        assert isinstance(move, Accept), move
    else:
        assert isinstance(move, Accept | WalkAway)
