"""An EV battery that charges on a CC-CV curve.

`Battery(capacity_kwh, soc, max_power_kw)` accepts power up to the car's own
limit and the charger's (`charger_max_kw` passed to `step`). Below
``taper_from_soc`` (80 % by default) it takes the full power (constant
current); above it the power falls linearly to ``min_power_fraction`` of the
maximum at 100 % (constant voltage). `step(seconds, charger_max_kw)` returns
the energy taken in Wh (a `Decimal`) and updates the state of charge.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal


@dataclass
class Battery:
    capacity_kwh: Decimal = Decimal(60)
    soc: Decimal = Decimal("0.2")  # state of charge, 0..1
    max_power_kw: Decimal = Decimal(150)
    target_soc: Decimal = Decimal(1)
    taper_from_soc: Decimal = Decimal("0.8")
    min_power_fraction: Decimal = Decimal("0.05")

    def __post_init__(self) -> None:
        self.capacity_kwh = Decimal(self.capacity_kwh)
        self.soc = Decimal(self.soc)
        self.max_power_kw = Decimal(self.max_power_kw)
        self.target_soc = Decimal(self.target_soc)
        if not (0 <= self.soc <= 1 and 0 < self.target_soc <= 1 and self.capacity_kwh > 0):
            raise ValueError("soc and target_soc in 0..1, capacity > 0")

    @property
    def full(self) -> bool:
        return self.soc >= self.target_soc

    def power_kw(self, charger_max_kw: Decimal | int = Decimal(150)) -> Decimal:
        """What the car accepts now: the lower limit, tapered above ``taper_from_soc``."""
        limit = min(self.max_power_kw, Decimal(charger_max_kw))
        if self.full:
            return Decimal(0)
        if self.soc <= self.taper_from_soc:
            return limit
        span = 1 - self.taper_from_soc
        fraction = 1 - (self.soc - self.taper_from_soc) / span * (1 - self.min_power_fraction)
        return limit * fraction

    def step(
        self, seconds: float | Decimal, charger_max_kw: Decimal | int = Decimal(150)
    ) -> Decimal:
        """Charge for ``seconds`` at the present power; the energy taken, in Wh."""
        power = self.power_kw(charger_max_kw)
        wanted_wh = power * Decimal(str(seconds)) / 3600 * 1000
        room_wh = (self.target_soc - self.soc) * self.capacity_kwh * 1000
        taken = max(Decimal(0), min(wanted_wh, room_wh))
        if taken:
            self.soc = min(self.target_soc, self.soc + taken / (self.capacity_kwh * 1000))
        return taken
