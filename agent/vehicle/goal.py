"""What the car needs from a charge: energy, departure, budget, power."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from vehicle.money import Money

# The power assumed when neither the car nor the tariff names one (a common DC charger).
DEFAULT_POWER_KW = Decimal(50)
_ONE = Decimal(1)
_HALF = Decimal("0.5")


@dataclass(frozen=True, slots=True)
class Goal:
    """A charge to buy: `energy_kwh` before `departure_at`, for at most `budget`.

    `max_power_kw` is what the car can take; without `departure_at` the car
    is neither in a hurry nor flexible (urgency one half).
    """

    energy_kwh: Decimal
    budget: Money
    departure_at: datetime | None = None
    max_power_kw: Decimal | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.energy_kwh, Decimal) or not self.energy_kwh > 0:
            raise ValueError(f"energy_kwh must be a positive Decimal, got {self.energy_kwh!r}")
        if not self.budget.amount > 0:
            raise ValueError(f"budget must be positive, got {self.budget}")
        if self.max_power_kw is not None and not self.max_power_kw > 0:
            raise ValueError(f"max_power_kw must be positive, got {self.max_power_kw!r}")
        if self.departure_at is not None and self.departure_at.utcoffset() is None:
            raise ValueError("departure_at must be timezone-aware")

    @property
    def currency(self) -> str:
        return self.budget.currency

    def charge_hours(self, power_kw: Decimal) -> Decimal:
        """Hours to deliver the energy at a steady `power_kw`."""
        return self.energy_kwh / power_kw

    def available_hours(self, now: datetime) -> Decimal | None:
        if self.departure_at is None:
            return None
        seconds = Decimal(str((self.departure_at - now).total_seconds()))
        return max(seconds / 3600, Decimal(0))

    def urgency(self, now: datetime) -> Decimal:
        """0 (all the time in the world) … 1 (must charge flat out now).

        The share of the time left before departure that charging at full
        power takes; one half without a departure.
        """
        available = self.available_hours(now)
        if available is None:
            return _HALF
        needed = self.charge_hours(self.max_power_kw or DEFAULT_POWER_KW)
        if available <= needed:
            return _ONE
        return needed / available
