"""Meter values from the wire (1.6 and 2.x shapes) as domain readings.

A reading the station cannot represent — a 2.x ``multiplier`` past
±`MAX_MULTIPLIER`, a timestamp outside what a ``datetime`` holds — is
refused with a CALLERROR (PropertyConstraintViolation / FormatViolation),
unless the caller passes ``at``: the message then carries a transaction's
life (StopTransaction, a 1.6 MeterValues of a transaction, TransactionEvent),
which the charge point retries until it is accepted, so refusing it would
lose the transaction's end. There the reading is kept as non-numeric, dated
``at``, and is recorded as an anomaly; the transaction goes on (or ends).
"""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from station.domain.events import MeterReading, SampledValue
from station.domain.metering import parse_number, sampled_value
from station.ocpp.connection import CallErrorReply, parse_time

# OCPP multipliers are powers of ten of a few units (k, M); past this no meter reading fits.
MAX_MULTIPLIER = 30


def readings_16(
    meter_values: list[dict[str, Any]] | None, *, at: datetime | None = None
) -> tuple[MeterReading, ...]:
    """1.6 ``meterValue`` / ``transactionData``: values are strings, ``unit`` beside them."""
    readings = []
    for mv in meter_values or ():
        values = tuple(
            sampled_value(
                sv.get("value"),
                measurand=sv.get("measurand"),
                unit=sv.get("unit"),
                context=sv.get("context"),
                phase=sv.get("phase"),
            )
            for sv in mv.get("sampledValue", ())
        )
        readings.append(_dated(mv.get("timestamp"), values, at))
    return tuple(readings)


def readings_2x(
    meter_values: list[dict[str, Any]] | None, *, at: datetime | None = None
) -> tuple[MeterReading, ...]:
    """2.x ``meterValue``: numbers, ``unitOfMeasure`` with a power-of-ten multiplier."""
    readings = []
    for i, mv in enumerate(meter_values or ()):
        values = []
        for j, sv in enumerate(mv.get("sampledValue", ())):
            unit = sv.get("unitOfMeasure") or {}
            raw: Any = sv.get("value")
            multiplier = unit.get("multiplier", 0)
            unrepresentable = False
            if multiplier and isinstance(multiplier, int):
                if abs(multiplier) > MAX_MULTIPLIER:
                    if at is None:
                        path = f"meterValue/{i}/sampledValue/{j}/unitOfMeasure/multiplier"
                        raise CallErrorReply(
                            "PropertyConstraintViolation",
                            f"{path}: {multiplier} is outside ±{MAX_MULTIPLIER}",
                            {"path": path, "constraint": "Maximum"},
                        )
                    unrepresentable = True
                else:
                    number = parse_number(raw)
                    raw = number.scaleb(multiplier) if number is not None else raw
            value = sampled_value(
                raw if not isinstance(raw, float) else Decimal(repr(raw)),
                measurand=sv.get("measurand"),
                unit=unit.get("unit"),
                context=sv.get("context"),
                phase=sv.get("phase"),
            )
            if unrepresentable:
                value = _not_a_number(value, f"{raw!r} x 10^{multiplier}")
            values.append(value)
        readings.append(_dated(mv.get("timestamp"), tuple(values), at))
    return tuple(readings)


def readings_stream(
    data: list[dict[str, Any]], basetime: datetime, measurand: str
) -> tuple[MeterReading, ...]:
    """2.1 NotifyPeriodicEventStream ``data``: value ``v`` (text) at ``basetime + t`` seconds.

    Raises CallErrorReply(PropertyConstraintViolation) for an offset that puts
    the sample outside what a datetime holds.
    """
    readings = []
    for i, element in enumerate(data):
        try:
            at = basetime + timedelta(seconds=element["t"])
        except (OverflowError, ValueError) as exc:
            raise CallErrorReply(
                "PropertyConstraintViolation",
                f"data/{i}/t: {element['t']!r} seconds from basetime is outside years 1-9999",
                {"path": f"data/{i}/t", "constraint": "Maximum"},
            ) from exc
        readings.append(MeterReading(at, (sampled_value(element["v"], measurand=measurand),)))
    return tuple(readings)


def _dated(
    timestamp: str | None, values: tuple[SampledValue, ...], at: datetime | None
) -> MeterReading:
    """The reading at its own time; with ``at``, an unreadable time makes it non-numeric."""
    try:
        return MeterReading(parse_time(timestamp), values)
    except CallErrorReply:
        if at is None:
            raise
    return MeterReading(
        at,
        tuple(
            _not_a_number(v, f"{v.raw if v.value is None else v.value} at {timestamp!r}")
            for v in values
        ),
    )


def _not_a_number(value: SampledValue, raw: str) -> SampledValue:
    return replace(value, value=None, raw=raw)


def wire_cost(amount: Decimal) -> float:
    """A cost for the wire: a float that prints as the exact decimal (4 places at most).

    The ocpp library's encoder would write ``Decimal("12.34")`` as ``12.3``; a
    float of a decimal with few digits prints exactly (``12.34``).
    """
    return float(amount.quantize(Decimal("0.0001")))
