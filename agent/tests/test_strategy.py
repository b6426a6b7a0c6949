from datetime import timedelta
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from factories import NOW, offer_doc, reply_doc
from vehicle.estimate import estimate_cost, judged_cost
from vehicle.goal import Goal
from vehicle.money import Money
from vehicle.strategy import Accept, Counter, Strategy, WalkAway, best
from vehicle.terms import NegotiationReply, Offer, Tariff


def goal(energy: str = "30", budget: str = "20.00", hours: float | None = None) -> Goal:
    departure = NOW + timedelta(hours=hours) if hours is not None else None
    return Goal(Decimal(energy), Money.parse(budget, "usd"), departure, Decimal("150"))


def reply(price: str, round_: int = 1, max_rounds: int = 5, **kw: object) -> NegotiationReply:
    return NegotiationReply.from_wire(
        reply_doc(offer_doc(price, **kw), round_=round_, max_rounds=max_rounds)
    )


def test_the_estimate_is_fee_plus_energy_plus_time_rounded_once() -> None:
    tariff = Tariff.from_wire(offer_doc("0.4567", time_price_per_hour="1.20")["tariff"])

    # 30 kWh at 150 kW = 0.2 h: 0.50 + 13.701 + 0.24 = 14.441 → 14.44
    assert estimate_cost(goal(), tariff) == Money(Decimal("14.44"), "usd")


def test_an_urgent_car_accepts_more_than_a_relaxed_one() -> None:
    tariff = Tariff.from_wire(offer_doc()["tariff"])
    urgent = Strategy.for_goal(goal(hours=0.1), NOW)
    relaxed = Strategy.for_goal(goal(hours=8), NOW)

    assert urgent.urgency == 1
    assert urgent.reservation_price(tariff) > relaxed.reservation_price(tariff)


def test_a_cheap_offer_is_accepted_with_a_cap_within_budget() -> None:
    move = Strategy.for_goal(goal(), NOW).decide(reply("0.3000"), NOW)

    assert isinstance(move, Accept)
    assert move.estimated_cost.amount == Decimal("9.50")
    assert move.estimated_cost <= move.cap <= Money.parse("20.00", "usd")


def test_a_dear_offer_is_countered_below_it_with_flexibility_when_relaxed() -> None:
    move = Strategy.for_goal(goal(hours=8), NOW).decide(reply("0.5500"), NOW)

    assert isinstance(move, Counter)
    assert move.terms.energy_price_per_kwh is not None
    assert move.terms.energy_price_per_kwh < Decimal("0.5500")
    assert move.terms.max_power_kw is not None and 11 <= move.terms.max_power_kw < 150
    assert move.terms.departure_at == NOW + timedelta(hours=8)


def test_an_urgent_car_offers_no_flexibility() -> None:
    move = Strategy.for_goal(goal(hours=0.1), NOW).decide(reply("0.9000"), NOW)

    assert isinstance(move, Counter)
    assert move.terms.max_power_kw is None and move.terms.departure_at is None


def test_at_the_last_round_it_makes_a_final_counter_at_its_reservation_price() -> None:
    strategy = Strategy.for_goal(goal(), NOW)
    the_reply = reply("0.9000", round_=5)

    move = strategy.decide(the_reply, NOW)

    assert isinstance(move, Counter)
    assert the_reply.offer is not None
    assert move.terms.energy_price_per_kwh == strategy.reservation_price(the_reply.offer.tariff)


def test_at_the_last_round_it_takes_an_offer_within_bounds() -> None:
    move = Strategy.for_goal(goal(), NOW).decide(reply("0.5000", round_=5), NOW)

    assert isinstance(move, Accept)


def test_past_the_last_round_it_walks_away() -> None:
    move = Strategy.for_goal(goal(), NOW).decide(reply("0.9000", round_=6), NOW)

    assert isinstance(move, WalkAway)


def test_it_walks_away_from_a_rejection_and_from_an_expired_offer() -> None:
    strategy = Strategy.for_goal(goal(), NOW)
    rejected = NegotiationReply.from_wire(reply_doc(status="rejected", detail="floor"))

    assert isinstance(strategy.decide(rejected, NOW), WalkAway)
    assert isinstance(strategy.decide(reply("0.30"), NOW + timedelta(hours=1)), WalkAway)


def test_an_agreed_counter_is_accepted_if_within_limits() -> None:
    agreed = NegotiationReply.from_wire(reply_doc(offer_doc("0.4000"), status="agreed"))

    assert isinstance(Strategy.for_goal(goal(), NOW).decide(agreed, NOW), Accept)


def test_the_best_of_several_deals_is_the_cheapest() -> None:
    strategy = Strategy.for_goal(goal(), NOW)
    moves = [strategy.decide(reply(p, offer_id=f"off_{p}"), NOW) for p in ("0.30", "0.25", "0.35")]

    chosen = best([m for m in moves if isinstance(m, Accept)])

    assert chosen is not None and chosen.offer.offer_id == "off_0.25"


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("2"), places=4)
energies = st.decimals(min_value=Decimal("1"), max_value=Decimal("120"), places=3)
budgets = st.decimals(min_value=Decimal("1"), max_value=Decimal("200"), places=2)
urgencies = st.decimals(min_value=Decimal(0), max_value=Decimal(1), places=3)
rounds = st.integers(min_value=1, max_value=8).flatmap(
    lambda m: st.tuples(st.integers(min_value=1, max_value=m + 1), st.just(m))
)


@settings(max_examples=400, deadline=None)
@given(
    price=prices,
    energy=energies,
    budget=budgets,
    urgency=urgencies,
    fee=st.decimals(min_value=Decimal(0), max_value=Decimal("5"), places=2),
    time_price=st.decimals(min_value=Decimal(0), max_value=Decimal("10"), places=2),
    station_estimate=st.decimals(min_value=Decimal(0), max_value=Decimal("300"), places=2),
    round_max=rounds,
    status=st.sampled_from(["open", "agreed"]),
)
def test_it_never_agrees_above_its_budget_or_its_reservation_price(
    price: Decimal,
    energy: Decimal,
    budget: Decimal,
    urgency: Decimal,
    fee: Decimal,
    time_price: Decimal,
    station_estimate: Decimal,
    round_max: tuple[int, int],
    status: str,
) -> None:
    the_goal = Goal(energy, Money(budget, "usd"), None, Decimal("50"))
    strategy = Strategy(the_goal, urgency)
    doc = offer_doc(
        str(price), estimated=str(station_estimate), session_fee=str(fee),
        time_price_per_hour=str(time_price),
    )  # fmt: skip
    the_reply = NegotiationReply.from_wire(
        reply_doc(doc, status=status, round_=round_max[0], max_rounds=round_max[1])
    )

    move = strategy.decide(the_reply, NOW)

    reservation = strategy.reservation_price(Offer.from_wire(doc).tariff)
    if isinstance(move, Accept):
        assert judged_cost(the_goal, move.offer) <= the_goal.budget
        assert price <= reservation
        assert move.estimated_cost <= move.cap <= the_goal.budget
    if isinstance(move, Counter):
        assert move.terms.energy_price_per_kwh is not None
        assert move.terms.energy_price_per_kwh <= reservation
        assert the_reply.can_counter


@settings(max_examples=200, deadline=None)
@given(urgency=urgencies, max_rounds=st.integers(min_value=1, max_value=10), budget=budgets)
def test_concession_never_goes_backwards_and_ends_at_the_reservation_price(
    urgency: Decimal, max_rounds: int, budget: Decimal
) -> None:
    strategy = Strategy(Goal(Decimal(30), Money(budget, "usd")), urgency)
    tariff = Tariff.from_wire(offer_doc()["tariff"])

    targets = [strategy.target_price(tariff, r, max_rounds) for r in range(1, max_rounds + 1)]

    assert targets == sorted(targets)
    assert targets[-1] == strategy.reservation_price(tariff)


@settings(max_examples=200, deadline=None)
@given(low=urgencies, high=urgencies, budget=budgets)
def test_more_urgency_never_lowers_the_reservation_price(
    low: Decimal, high: Decimal, budget: Decimal
) -> None:
    low, high = min(low, high), max(low, high)
    the_goal = Goal(Decimal(30), Money(budget, "usd"))
    tariff = Tariff.from_wire(offer_doc()["tariff"])

    assert Strategy(the_goal, low).reservation_price(tariff) <= Strategy(
        the_goal, high
    ).reservation_price(tariff)
