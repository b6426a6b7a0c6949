"""Meter values from the wire (1.6 and 2.x shapes) as domain readings."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from station.domain.events import MeterReading
from station.domain.metering import parse_number, sampled_value
from station.ocpp.connection import parse_time


def readings_16(meter_values: list[dict[str, Any]] | None) -> tuple[MeterReading, ...]:
    """1.6 ``meterValue`` / ``transactionData``: values are strings, ``unit`` beside them."""
    return tuple(
        MeterReading(
            timestamp=parse_time(mv.get("timestamp")),
            values=tuple(
                sampled_value(
                    sv.get("value"),
                    measurand=sv.get("measurand"),
                    unit=sv.get("unit"),
                    context=sv.get("context"),
                    phase=sv.get("phase"),
                )
                for sv in mv.get("sampledValue", ())
            ),
        )
        for mv in meter_values or ()
    )


def readings_2x(meter_values: list[dict[str, Any]] | None) -> tuple[MeterReading, ...]:
    """2.x ``meterValue``: numbers, ``unitOfMeasure`` with a power-of-ten multiplier."""
    readings = []
    for mv in meter_values or ():
        values = []
        for sv in mv.get("sampledValue", ()):
            unit = sv.get("unitOfMeasure") or {}
            raw: Any = sv.get("value")
            multiplier = unit.get("multiplier", 0)
            if multiplier and isinstance(multiplier, int):
                number = parse_number(raw)
                raw = number.scaleb(multiplier) if number is not None else raw
            values.append(
                sampled_value(
                    raw if not isinstance(raw, float) else Decimal(repr(raw)),
                    measurand=sv.get("measurand"),
                    unit=unit.get("unit"),
                    context=sv.get("context"),
                    phase=sv.get("phase"),
                )
            )
        readings.append(MeterReading(parse_time(mv.get("timestamp")), tuple(values)))
    return tuple(readings)


def wire_cost(amount: Decimal) -> float:
    """A cost for the wire: a float that prints as the exact decimal (4 places at most).

    The ocpp library's encoder would write ``Decimal("12.34")`` as ``12.3``; a
    float of a decimal with few digits prints exactly (``12.34``).
    """
    return float(amount.quantize(Decimal("0.0001")))
