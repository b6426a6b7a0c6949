"""The cap decision: continue, lower the limit, or stop before the next sample passes the cap."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.domain.cap import (
    MIN_LIMIT_W,
    CapAction,
    CapDecision,
    PastTheCap,
    decide_cap,
    past_the_cap,
)
from station.domain.cost import Usage, session_cost
from station.domain.money import Money
from station.domain.session import SessionStatus
from station.domain.tariff import Tariff
from station.errors import IllegalTransition

D = Decimal
TARIFF = Tariff("usd", D("0.40"), session_fee=D("0.50"))
CAP = Money(D("10.00"), "usd")
MINUTE = D(60)


def _at(kwh: str, minutes: int = 30) -> Usage:
    return Usage(energy_wh=D(kwh) * 1000, charging_seconds=D(minutes * 60))


def _decide(usage: Usage, power_w: str, *, can_limit: bool = True) -> CapDecision:
    return decide_cap(
        SessionStatus.CHARGING, TARIFF, CAP, usage, D(power_w), MINUTE, can_limit=can_limit
    )


def test_far_from_the_cap_the_charge_continues() -> None:
    decision = _decide(_at("5"), "50000")  # 2.50 spent, 0.33 a minute at 50 kW

    assert decision.action is CapAction.CONTINUE
    assert decision.cost == Money(D("2.50"), "usd")


def test_at_the_cap_it_stops() -> None:
    assert _decide(_at("23.75"), "0").action is CapAction.STOP  # 0.50 + 9.50 = 10.00


def test_when_the_next_sample_would_pass_the_cap_without_a_limit_it_stops_now() -> None:
    # 9.80 spent; a minute at 50 kW is 0.833 kWh = 0.33: the next sample would be 10.13.
    decision = _decide(_at("23.25"), "50000", can_limit=False)

    assert decision.action is CapAction.STOP


def test_with_a_limit_the_next_sample_lands_on_the_cap_instead() -> None:
    usage = _at("23.25")  # 9.80 spent, 0.20 left: 0.5 kWh in the next minute = 30 kW

    decision = _decide(usage, "50000")

    assert decision.action is CapAction.LIMIT
    assert decision.limit_w == D(30000) and decision.duration_s == MINUTE
    landed = Usage(usage.energy_wh + D(500), usage.charging_seconds + MINUTE)
    assert session_cost(TARIFF, landed).total == CAP


def test_two_samples_from_the_cap_the_limit_is_the_present_power_while_the_money_lasts() -> None:
    usage = _at("22.5")  # 9.50 spent; 0.50 left buys 1.25 kWh = 90 s at 50 kW

    decision = _decide(usage, "50000")

    assert decision.action is CapAction.LIMIT
    assert decision.limit_w == D(50000) and decision.duration_s == D(90)


def test_a_limit_below_the_minimum_current_is_a_stop() -> None:
    usage = _at("23.73")  # 9.99 spent: 0.01 buys 25 Wh
    at = {"can_limit": True}

    in_a_minute = decide_cap(SessionStatus.CHARGING, TARIFF, CAP, usage, D(50000), MINUTE, **at)
    in_5_minutes = decide_cap(
        SessionStatus.CHARGING, TARIFF, CAP, usage, D(50000), 5 * MINUTE, **at
    )

    assert in_a_minute.action is CapAction.LIMIT and in_a_minute.limit_w == D(1500)
    assert in_5_minutes.action is CapAction.STOP  # 300 W: below the 6 A minimum


def test_a_time_price_counts_in_the_landing() -> None:
    tariff = Tariff("usd", D("0.40"), time_price_per_hour=D("6.00"))  # 0.10 a minute
    usage = Usage(energy_wh=D(20000), charging_seconds=D(1800))  # 8.00 + 3.00 = 11.00
    cap = Money(D("11.30"), "usd")  # a minute at 50 kW would be 11.43

    decision = decide_cap(
        SessionStatus.CHARGING, tariff, cap, usage, D(50000), MINUTE, can_limit=True
    )

    # 0.10 of the 0.30 left pays the minute itself; 0.20 buys 0.5 kWh: 30 kW.
    assert decision.action is CapAction.LIMIT
    assert decision.limit_w == D(30000) and decision.duration_s == MINUTE


def test_a_maximum_cost_below_the_cap_never_stops_the_charge() -> None:
    tariff = Tariff("usd", D("0.40"), max_cost=D("8.00"))

    decision = decide_cap(
        SessionStatus.CHARGING, tariff, CAP, _at("40"), D(150000), MINUTE, can_limit=True
    )

    assert decision.action is CapAction.CONTINUE


@pytest.mark.parametrize("status", [s for s in SessionStatus if s.final])
def test_no_decision_out_of_a_terminal_state(status: SessionStatus) -> None:
    with pytest.raises(IllegalTransition):
        decide_cap(status, TARIFF, CAP, _at("1"), D(1000), MINUTE, can_limit=True)


# -- properties: a charger sampled every interval, acting on every decision at once ------


@dataclass
class _Charger:
    """Delivers min(its power, the schedule's limit) until stopped; samples every interval."""

    obeys_limits: bool
    energy_wh: Decimal = Decimal(0)
    seconds: Decimal = Decimal(0)
    limit_w: Decimal | None = None
    limit_until: Decimal | None = None

    def deliver(self, power_w: Decimal, interval_s: Decimal) -> None:
        if self.obeys_limits and self.limit_w is not None and self.limit_until is not None:
            within = min(max(self.limit_until - self.seconds, D(0)), interval_s)
            self.energy_wh += min(power_w, self.limit_w) * within / 3600
        else:
            self.energy_wh += power_w * interval_s / 3600
        self.seconds += interval_s


tariffs = st.builds(
    Tariff,
    currency=st.just("usd"),
    energy_price_per_kwh=st.decimals("0.20", "0.90", places=4),
    session_fee=st.decimals("0", "1.00", places=2),
    time_price_per_hour=st.decimals("0", "6.00", places=2),
)


@settings(max_examples=200, deadline=None)
@given(
    tariff=tariffs,
    cap=st.decimals("1.00", "30.00", places=2),
    powers=st.lists(st.integers(7_000, 350_000), min_size=1, max_size=8),
    interval=st.sampled_from([D(60), D(300), D(900)]),
    obeys=st.booleans(),
    can_limit=st.booleans(),
)
def test_captured_never_passes_the_cap_and_the_stop_comes_before_the_crossing(
    tariff: Tariff,
    cap: Decimal,
    powers: list[int],
    interval: Decimal,
    obeys: bool,
    can_limit: bool,
) -> None:
    """Power never rises (a battery tapers); each sample's decision is acted on at once.

    What is captured never passes the cap. A charger that obeys the limits never passes
    it at all. Without limits (2.1) the stop is decided at the sample before the one
    that would cross; a charger that ignores its limit crosses by that one interval and
    is stopped at the next reading. Only the first interval (no power measured yet) is
    unguarded. A stop ends the loop: there is no decision after it.
    """
    cap_money = Money(cap, "usd")
    charger = _Charger(obeys_limits=obeys)
    ladder = sorted((D(p) for p in powers), reverse=True)
    previous: tuple[Decimal, Decimal] | None = None
    for step in range(2000):
        usage = Usage(charger.energy_wh, charging_seconds=charger.seconds)
        assert session_cost(tariff, usage, cap_money).total <= cap_money  # the capture
        present = None
        if previous is not None:
            delta = (charger.energy_wh - previous[0], charger.seconds - previous[1])
            present = (delta[0] * 3600 / delta[1]).quantize(D("0.001"))  # as metering does
        decision = decide_cap(
            SessionStatus.CHARGING, tariff, cap_money, usage, present, interval,
            can_limit=can_limit,
        )  # fmt: skip
        if decision.action is CapAction.STOP:
            return
        if decision.action is CapAction.LIMIT:
            assert can_limit and decision.limit_w is not None and decision.duration_s
            assert decision.limit_w >= MIN_LIMIT_W
            charger.limit_w = decision.limit_w
            charger.limit_until = charger.seconds + decision.duration_s
        previous = (charger.energy_wh, charger.seconds)
        charger.deliver(ladder[min(step // 20, len(ladder) - 1)], interval)
        after = Usage(charger.energy_wh, charging_seconds=charger.seconds)
        if session_cost(tariff, after).total > cap_money:
            # Only a charger that ignored the limit it was given (or the first interval,
            # with no power measured yet) gets here, by at most that interval; the
            # next reading stops it.
            ignored = can_limit and not obeys and decision.action is CapAction.LIMIT
            assert present is None or ignored, "the cap was passed without a stop before"
            again = decide_cap(
                SessionStatus.CHARGING, tariff, cap_money, after, None, interval,
                can_limit=can_limit,
            )  # fmt: skip
            assert again.action is CapAction.STOP
            return
    raise AssertionError("2000 samples and neither a stop nor the cap")


def test_what_was_delivered_past_the_cap_is_measured_in_energy_and_money() -> None:
    past = past_the_cap(TARIFF, _at("30"), CAP)  # 0.50 + 12.00 = 12.50 on a 10.00 cap

    assert past == PastTheCap(D(6250), Money(D("2.50"), "usd"))
    assert past_the_cap(TARIFF, _at("23.75"), CAP) is None  # exactly the cap
