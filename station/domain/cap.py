"""The cap, enforced as the energy flows: continue, lower the charging limit, or stop now.

`decide_cap` looks at one committed reading of a live session — its tariff,
its cap, what it used so far, the present power (the average over the last
two samples) and the meter interval — and says what the charge point must
hear:

- **stop now** when the cost has reached the cap, or when the *next* sample
  at the present power would pass it and no lower limit can make it land on
  the cap instead (2.1, which enforces ``maxCost`` itself; a limit below
  `MIN_LIMIT_W`);
- **lower the limit** (OCPP 1.6 / 2.0.1 SetChargingProfile, a TxProfile on the
  running transaction) as the cost approaches the cap: a limit of ``limit_w``
  for ``duration_s`` from the reading, then 0 W. The energy that schedule
  allows is what the money left buys, so a charge point that obeys it never
  passes the cap, even if the stop that follows is late or the link drops.
  When the next sample at the present power would pass the cap, the limit is
  the power that makes that sample land on the cap; one interval earlier
  (two samples would pass) it is the present power, for as long as the money
  lasts. When what is left cannot buy an interval at `MIN_LIMIT_W`, the
  charge is stopped (a charge point its schedule holds at 0 W is done);
- **continue** otherwise.

Pure and exact: `Decimal` throughout, the cost from `session_total` (the total of
`session_cost`, its one rounding), a limit rounded down to the watt. A terminal session gets no
decision (`IllegalTransition`): nothing may move it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from station.domain.cost import Usage, session_cost, session_total
from station.domain.money import Money, minor_unit_exponent
from station.domain.session import SessionStatus
from station.domain.tariff import Tariff
from station.errors import IllegalTransition

# The least a charging limit may be: 6 A on one 230 V phase (IEC 61851's minimum
# current). Below it the charge is stopped instead of throttled further.
MIN_LIMIT_W = Decimal(1380)
_W = Decimal(1)
_HOUR = Decimal(3600)


class CapAction(StrEnum):
    CONTINUE = "continue"
    LIMIT = "limit"
    STOP = "stop"


@dataclass(frozen=True, slots=True)
class ChargingLimit:
    """What the charge point is told: at most `limit_w` on `evse_id` from `starts_at`
    (the reading's time, the charge point's clock) for `duration_s`, then 0 W."""

    evse_id: int
    limit_w: Decimal
    starts_at: datetime
    duration_s: Decimal


@dataclass(frozen=True, slots=True)
class CapDecision:
    action: CapAction
    # The uncapped cost of what was used so far (rounded once).
    cost: Money
    # LIMIT: at most `limit_w` for `duration_s` from the reading, then 0 W.
    limit_w: Decimal | None = None
    duration_s: Decimal | None = None


def next_sample(usage: Usage, power_w: Decimal, interval_s: Decimal) -> Usage:
    """What the session will have used one interval on, at `power_w`."""
    return replace(
        usage,
        energy_wh=usage.energy_wh + power_w * interval_s / _HOUR,
        charging_seconds=usage.charging_seconds + interval_s,
    )


def decide_cap(
    status: SessionStatus,
    tariff: Tariff,
    cap: Money,
    usage: Usage,
    power_w: Decimal | None,
    interval_s: Decimal,
    *,
    can_limit: bool,
) -> CapDecision:
    """Continue, lower the limit, or stop now (see the module text)."""
    if status.final:
        raise IllegalTransition(f"no cap decision for a {status} session")
    if interval_s <= 0:
        raise ValueError("the meter interval must be positive")
    cost = session_total(tariff, usage)
    if cost >= cap:
        return CapDecision(CapAction.STOP, cost)
    power = power_w if power_w is not None and power_w > 0 else Decimal(0)

    def passes(at_w: Decimal, seconds: Decimal) -> bool:
        return session_total(tariff, next_sample(usage, at_w, seconds)) > cap

    landing = _landing_limit(tariff, cap, usage, interval_s) if can_limit else None
    if passes(power, interval_s):
        if landing is not None and MIN_LIMIT_W <= landing < power:
            return CapDecision(CapAction.LIMIT, cost, landing, interval_s)
        return CapDecision(CapAction.STOP, cost)
    if landing is not None and landing < MIN_LIMIT_W:
        # What is left cannot buy an interval at the least current (a charge point held
        # at 0 W by its schedule would otherwise idle on): the charge is over.
        return CapDecision(CapAction.STOP, cost)
    if can_limit and power >= MIN_LIMIT_W and passes(power, 2 * interval_s):
        seconds = _lasting(tariff, cap, usage, power, interval_s)
        return CapDecision(CapAction.LIMIT, cost, power.quantize(_W, ROUND_DOWN), seconds)
    return CapDecision(CapAction.CONTINUE, cost)


def _landing_limit(tariff: Tariff, cap: Money, usage: Usage, interval_s: Decimal) -> Decimal | None:
    """The highest whole-watt power at which the next sample stays within the cap."""
    price = tariff.energy_price_per_kwh
    if price <= 0:
        return None  # energy is free: a limit changes nothing the cap sees
    idle = session_total(tariff, next_sample(usage, Decimal(0), interval_s))
    left = cap.amount - idle.amount
    if left <= 0:
        return None
    limit = (left / price * 1000 * _HOUR / interval_s).quantize(_W, ROUND_DOWN)
    # The linear estimate ignores the rounding (half up) and a minimum or maximum
    # cost: step down until the sample really lands within the cap.
    quantum = Decimal(1).scaleb(-minor_unit_exponent(cap.currency))
    step = max((quantum / price * 1000 * _HOUR / interval_s).quantize(_W), _W)
    while limit > 0:
        landed = session_total(tariff, next_sample(usage, limit, interval_s))
        if landed <= cap:
            return limit
        limit -= step
    return None


def _lasting(
    tariff: Tariff, cap: Money, usage: Usage, power_w: Decimal, interval_s: Decimal
) -> Decimal:
    """How long (whole seconds, at least one interval) the money left lasts at `power_w`."""
    cost = session_total(tariff, usage)
    per_hour = power_w / 1000 * tariff.energy_price_per_kwh + tariff.time_price_per_hour
    seconds = ((cap.amount - cost.amount) / per_hour * _HOUR).quantize(_W, ROUND_DOWN)
    while seconds > interval_s:
        if session_total(tariff, next_sample(usage, power_w, seconds)) <= cap:
            return seconds
        seconds -= max((seconds - interval_s) / 8, _W).quantize(_W, ROUND_DOWN)
    return interval_s


@dataclass(frozen=True, slots=True)
class PastTheCap:
    """What a session delivered beyond its cap: not billed (the capture stops at the cap)."""

    energy_wh: Decimal
    amount: Money


def past_the_cap(tariff: Tariff, usage: Usage, cap: Money) -> PastTheCap | None:
    """The cost above the cap and the energy it stands for (at the tariff's energy price,
    at most all of it, to the watt-hour); None when the cap was not passed."""
    cost = session_cost(tariff, usage, cap)
    if not cost.capped:
        return None
    over = cost.uncapped - cost.total
    price = tariff.energy_price_per_kwh
    energy = usage.energy_wh if price <= 0 else min(over.amount / price * 1000, usage.energy_wh)
    return PastTheCap(energy.quantize(_W, ROUND_DOWN), over)
