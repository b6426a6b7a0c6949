"""The demo fails a session that gave away more than one meter interval of energy."""

from __future__ import annotations

from decimal import Decimal

from simulators.battery import Battery
from simulators.charge_point import Plug
from simulators.demo import DRIVERS, Report, Row, _unbilled


def _settled(above_cap: str, delivered_wh: int, billed_kwh: str) -> tuple[Row, Plug]:
    row = Row(DRIVERS[0], "ocpp1.6", status="settled", verdict="accepted")
    row.price_per_kwh, row.above_cap, row.energy_kwh = "0.4000", above_cap, Decimal(billed_kwh)
    plug = Plug(1, Battery(), meter_start_wh=0, meter_stop_wh=delivered_wh)
    plug.readings_wh = [0, 1000, 2000, 2500]  # one interval: at most 1 kWh
    return row, plug


def test_energy_past_the_cap_beyond_one_interval_fails_the_session() -> None:
    row, plug = _settled("-1.00", 20000, "20")  # 1.00 above the cap: 2.5 kWh

    _unbilled(row, plug)

    assert (row.unbilled_kwh, row.unbilled, row.interval_kwh) == (
        Decimal("2.500"),
        Decimal("1.00"),
        Decimal(1),
    )
    assert not row.ended_as_expected and "not billed" in row.detail


def test_energy_never_reported_counts_as_unbilled_too() -> None:
    row, plug = _settled("0", 21500, "20")  # the meter says 1.5 kWh more than the bill

    _unbilled(row, plug)

    assert row.unbilled_kwh == Decimal("1.500") and not row.ended_as_expected


def test_within_one_interval_the_session_is_as_expected() -> None:
    row, plug = _settled("-0.20", 20000, "20")  # 0.5 kWh past the cap

    _unbilled(row, plug)

    assert row.unbilled_kwh == Decimal("0.500") and row.ended_as_expected


def test_the_report_sums_the_overshoot_per_version() -> None:
    row, plug = _settled("-1.00", 20000, "20")
    _unbilled(row, plug)
    other = Row(DRIVERS[1], "ocpp2.0.1", status="settled", verdict="accepted")

    document = Report(rows=[row, other]).as_json()

    assert document["unbilled_by_version"] == {
        "ocpp1.6": {"kwh": "2.500", "money": "1.00"},
        "ocpp2.0.1": {"kwh": "0", "money": "0"},
    }
    assert document["ok"] is False
