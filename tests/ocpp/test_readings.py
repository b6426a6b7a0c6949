"""Meter values from the 1.6 and 2.x wire shapes, and costs back onto the wire."""

from __future__ import annotations

import json
from decimal import Decimal

from station.domain.events import ENERGY_REGISTER, ReadingContext
from station.ocpp.readings import readings_2x, readings_16, wire_cost


def test_costs_go_on_the_wire_as_exact_decimals_not_one_place() -> None:
    assert json.dumps(wire_cost(Decimal("12.34"))) == "12.34"
    assert json.dumps(wire_cost(Decimal("0.1234"))) == "0.1234"
    assert json.dumps(wire_cost(Decimal("7"))) == "7.0"


def test_1_6_strings_with_units_and_contexts() -> None:
    wire = [
        {
            "timestamp": "2026-01-01T00:00:00Z",
            "sampledValue": [
                {"value": "1.25", "unit": "kWh", "context": "Transaction.End"},
                {"value": "7200", "measurand": "Power.Active.Import", "unit": "W"},
            ],
        }
    ]

    (reading,) = readings_16(wire)

    energy, power = reading.values
    assert (energy.measurand, energy.value, energy.context) == (
        ENERGY_REGISTER,
        Decimal("1250.00"),
        ReadingContext.TRANSACTION_END,
    )
    assert power.value == Decimal(7200)


def test_2_x_numbers_with_multiplier_and_phases() -> None:
    wire = [
        {
            "timestamp": "2026-01-01T00:00:00+01:00",
            "sampledValue": [
                {"value": 12.5, "unitOfMeasure": {"unit": "kWh", "multiplier": 1}},
                {"value": 3, "phase": "L1"},
            ],
        }
    ]

    (reading,) = readings_2x(wire)

    assert reading.timestamp.isoformat() == "2025-12-31T23:00:00+00:00"
    assert reading.values[0].value == Decimal("125000.0")
    assert reading.values[1].phase == "L1"
