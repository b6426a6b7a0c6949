"""The cost of a session: itemised lines from a tariff and what was used.

`session_cost` prices energy, the session fee, charging time and idle time
beyond the grace period, applies the tariff's minimum and maximum and an
optional cap, and rounds **once**: the unrounded total is rounded half-up to
the minor unit, then the lines are allocated by largest remainder so that
their rounded amounts sum exactly to that total. A cap shows as a final
negative ``cap`` line, so the lines still sum to the total.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_DOWN, Decimal
from enum import StrEnum

from station.domain.money import Money, MoneyError, minor_unit_exponent
from station.domain.tariff import Tariff

_KWH = Decimal(1000)
_Q3 = Decimal("0.001")


class CostKind(StrEnum):
    ENERGY = "energy"
    SESSION_FEE = "session_fee"
    TIME = "time"
    IDLE = "idle"
    MINIMUM = "minimum"
    MAXIMUM = "maximum"
    CAP = "cap"


@dataclass(frozen=True, slots=True)
class Usage:
    """What a session used: energy in Wh, charging and idle time in seconds."""

    energy_wh: Decimal
    charging_seconds: Decimal = Decimal(0)
    idle_seconds: Decimal = Decimal(0)

    def __post_init__(self) -> None:
        for name in ("energy_wh", "charging_seconds", "idle_seconds"):
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise MoneyError(f"{name} must be a non-negative Decimal, got {value!r}")


@dataclass(frozen=True, slots=True)
class CostLine:
    kind: CostKind
    quantity: Decimal
    unit_price: Decimal
    amount: Money

    def to_wire(self) -> dict[str, str]:
        return {
            "kind": str(self.kind),
            "quantity": str(self.quantity),
            "unit_price": str(self.unit_price),
            "amount": self.amount.to_wire(),
        }


@dataclass(frozen=True, slots=True)
class SessionCost:
    lines: tuple[CostLine, ...]
    total: Money
    # The total before the cap (rounded); equal to total when the cap did not bite.
    uncapped: Money

    @property
    def capped(self) -> bool:
        return self.total < self.uncapped


def session_total(tariff: Tariff, usage: Usage) -> Money:
    """`session_cost(tariff, usage).total` without the itemised lines (rounded once): what
    the cap decision prices, several times a reading."""
    _, subtotal = _priced(tariff, usage)
    return Money(subtotal, tariff.currency).rounded()


def session_cost(tariff: Tariff, usage: Usage, cap: Money | None = None) -> SessionCost:
    """Price `usage` under `tariff`, never above `cap`; the lines sum to the total."""
    currency = tariff.currency
    if cap is not None and cap.currency != currency:
        raise MoneyError(f"cap in {cap.currency}, tariff in {currency}")
    raw, subtotal = _priced(tariff, usage)
    uncapped = Money(subtotal, currency).rounded()  # the one rounding
    amounts = _allocate([amount for *_, amount in raw], uncapped.amount, currency)
    lines = [
        CostLine(kind, _quantity(kind, quantity), unit_price, Money(amount, currency))
        for (kind, quantity, unit_price, _), amount in zip(raw, amounts, strict=True)
    ]
    total = uncapped
    if cap is not None and uncapped > cap:
        cut = cap.rounded() - uncapped
        lines.append(CostLine(CostKind.CAP, Decimal(1), cut.amount, cut))
        total = cap.rounded()
    return SessionCost(tuple(lines), total, uncapped)


def _priced(
    tariff: Tariff, usage: Usage
) -> tuple[list[tuple[CostKind, Decimal, Decimal, Decimal]], Decimal]:
    """The unrounded lines (kind, quantity, unit price, amount) and their subtotal, after
    the tariff's minimum and maximum."""
    kwh = usage.energy_wh / _KWH
    hours = usage.charging_seconds / 3600
    grace_s = Decimal(tariff.idle_grace_minutes * 60)
    idle_minutes = max(usage.idle_seconds - grace_s, Decimal(0)) / 60
    raw: list[tuple[CostKind, Decimal, Decimal, Decimal]] = [
        (CostKind.ENERGY, kwh, tariff.energy_price_per_kwh, kwh * tariff.energy_price_per_kwh)
    ]
    if tariff.session_fee:
        raw.append((CostKind.SESSION_FEE, Decimal(1), tariff.session_fee, tariff.session_fee))
    if tariff.time_price_per_hour:
        raw.append((CostKind.TIME, hours, tariff.time_price_per_hour,
                    hours * tariff.time_price_per_hour))  # fmt: skip
    if tariff.idle_fee_per_minute and idle_minutes:
        raw.append((CostKind.IDLE, idle_minutes, tariff.idle_fee_per_minute,
                    idle_minutes * tariff.idle_fee_per_minute))  # fmt: skip
    subtotal = sum((amount for *_, amount in raw), Decimal(0))
    if tariff.min_cost is not None and subtotal < tariff.min_cost:
        gap = tariff.min_cost - subtotal
        raw.append((CostKind.MINIMUM, Decimal(1), gap, gap))
        subtotal = tariff.min_cost
    if tariff.max_cost is not None and subtotal > tariff.max_cost:
        over = tariff.max_cost - subtotal
        raw.append((CostKind.MAXIMUM, Decimal(1), over, over))
        subtotal = tariff.max_cost
    return raw, subtotal


def _quantity(kind: CostKind, quantity: Decimal) -> Decimal:
    return (
        quantity.quantize(_Q3)
        if kind in (CostKind.ENERGY, CostKind.TIME, CostKind.IDLE)
        else (quantity)
    )


def _allocate(raw: list[Decimal], total: Decimal, currency: str) -> list[Decimal]:
    """Split `total` (already rounded) over `raw` by largest remainder.

    Positive lines are truncated to the minor unit and the remaining units go
    to the lines with the largest remainders; negative lines (a maximum) are
    truncated toward zero too. The result sums exactly to `total`.
    """
    quantum = Decimal(1).scaleb(-minor_unit_exponent(currency))
    truncated = [value.quantize(quantum, ROUND_DOWN) for value in raw]
    residue = total - sum(truncated, Decimal(0))
    steps = int((residue / quantum).to_integral_value())
    order = sorted(range(len(raw)), key=lambda i: raw[i] - truncated[i], reverse=steps > 0)
    step = quantum if steps > 0 else -quantum
    result = list(truncated)
    for n in range(abs(steps)):
        result[order[n % len(order)]] += step
    return result
