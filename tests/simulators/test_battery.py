"""The EV battery: full power up to the taper, then less and less, never past the target."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from simulators.battery import Battery


def test_full_power_below_the_taper_and_less_above_it() -> None:
    low = Battery(capacity_kwh=Decimal(60), soc=Decimal("0.5"), max_power_kw=Decimal(100))
    high = Battery(capacity_kwh=Decimal(60), soc=Decimal("0.95"), max_power_kw=Decimal(100))

    assert low.power_kw(Decimal(50)) == Decimal(50)  # the charger limits
    assert high.power_kw(Decimal(150)) < Decimal(30)


def test_a_full_battery_takes_nothing() -> None:
    battery = Battery(soc=Decimal(1))

    assert battery.step(3600) == 0
    assert battery.full


@given(
    soc=st.decimals(min_value=0, max_value=1, places=3),
    target=st.decimals(min_value="0.01", max_value=1, places=2),
    steps=st.lists(st.integers(min_value=1, max_value=3600), max_size=50),
)
def test_energy_taken_matches_the_state_of_charge_and_never_passes_the_target(
    soc: Decimal, target: Decimal, steps: list[int]
) -> None:
    battery = Battery(capacity_kwh=Decimal(50), soc=soc, target_soc=target)
    start = battery.soc
    taken = sum((battery.step(s) for s in steps), Decimal(0))

    assert battery.soc <= max(target, start)
    assert abs(taken - (battery.soc - start) * 50_000) < Decimal("0.001")
