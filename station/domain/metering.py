"""Metering: from the sampled values a charge point reports to delivered energy.

The energy of a transaction is ``last valid register − start register``, where
the register is ``Energy.Active.Import.Register`` in Wh. The rules, in order:

* **Units.** ``Wh`` (the default when no unit is given) or ``kWh``; power in
  ``W`` or ``kW``. Everything is normalised to Wh / W as `Decimal`.
* **Which value is the register.** A reading (the sampled values taken at one
  instant) may carry the register for several phases. The phase-less value is
  the total and wins; without it, the sum of ``L1``, ``L2`` and ``L3`` when all
  three are present and numeric; otherwise the reading has no register.
* **Start.** ``meter_start_wh`` from the start message; without one, the
  first valid register.
* **What is refused**, recorded as an `Anomaly` and never applied: a value that
  is not a number; a register lower than the last valid one (``backwards``);
  a reading at or before the last valid reading's time (``duplicate`` when the
  value is the same, else ``out_of_order``); a message whose ``seq_no`` is not
  above the last one seen (``duplicate_seq_no``, 2.x). A ``Transaction.Begin``
  reading no newer than the last one is skipped without an anomaly: 1.6
  ``transactionData`` usually opens with the start's sample again.
* **End.** A meter stop below the last valid register is an anomaly and
  the last register stands; otherwise the meter stop is the final register.

So the energy never decreases, and it never depends on a refused value.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal, InvalidOperation

from station.domain.events import (
    ENERGY_REGISTER,
    MeterReading,
    ReadingContext,
    SampledValue,
)

_ENERGY_UNITS = {"wh": Decimal(1), "kwh": Decimal(1000)}
_POWER_UNITS = {"w": Decimal(1), "kw": Decimal(1000)}
_PHASES = ("L1", "L2", "L3")
_LARGEST = Decimal(10) ** 15  # Wh or W; a thousand terawatt-hours is no reading


@dataclass(frozen=True, slots=True)
class Anomaly:
    kind: str  # non_numeric | backwards | duplicate | out_of_order | duplicate_seq_no | …
    detail: str
    timestamp: datetime | None = None


def parse_number(raw: object) -> Decimal | None:
    """A wire number (1.6 sends strings, 2.x numbers) as Decimal; None if it is not one."""
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | Decimal):
        value = Decimal(raw)
    elif isinstance(raw, float | str):
        try:
            value = Decimal(str(raw).strip())
        except InvalidOperation:
            return None
    else:
        return None
    if not value.is_finite() or abs(value) >= _LARGEST:
        return None  # not a meter reading (and would not fit the store)
    return value


def sampled_value(
    raw: object,
    *,
    measurand: str | None = None,
    unit: str | None = None,
    context: str | None = None,
    phase: str | None = None,
) -> SampledValue:
    """Normalise one sampled value from the wire (energy to Wh, power to W)."""
    measurand = measurand or ENERGY_REGISTER  # the OCPP default measurand
    number = parse_number(raw)
    factors = _ENERGY_UNITS if measurand.startswith("Energy") else _POWER_UNITS
    unit_key = (unit or "").lower()
    if measurand.startswith(("Energy", "Power")):
        default = "wh" if measurand.startswith("Energy") else "w"
        factor = factors.get(unit_key or default)
        if factor is None:
            number = None  # an energy in a unit we cannot convert is not a reading
        elif number is not None:
            number = number * factor
        unit = "Wh" if measurand.startswith("Energy") else "W"
    try:
        ctx = ReadingContext(context) if context else ReadingContext.SAMPLE_PERIODIC
    except ValueError:
        ctx = ReadingContext.OTHER
    return SampledValue(
        measurand=measurand,
        value=number,
        unit=unit or "",
        context=ctx,
        phase=phase,
        raw=None if number is not None else str(raw),
    )


def register_of(reading: MeterReading) -> tuple[Decimal | None, tuple[Anomaly, ...]]:
    """The import register of one reading (Wh), by the rule in the module docstring."""
    total: Decimal | None = None
    phases: dict[str, Decimal] = {}
    anomalies: list[Anomaly] = []
    for v in reading.values:
        if v.measurand != ENERGY_REGISTER:
            continue
        if v.value is None:
            detail = f"{v.measurand} {v.phase or ''} = {v.raw!r}"
            anomalies.append(Anomaly("non_numeric", detail, reading.timestamp))
        elif v.phase is None:
            total = v.value if total is None else total  # the first total wins
        elif v.phase in _PHASES:
            phases[v.phase] = v.value
    if total is not None:
        return total, tuple(anomalies)
    if len(phases) == len(_PHASES):
        return sum((phases[p] for p in _PHASES), Decimal(0)), tuple(anomalies)
    return None, tuple(anomalies)


@dataclass(frozen=True, slots=True)
class MeterState:
    """What a transaction's meter has said so far (only validated values)."""

    start_wh: Decimal | None = None
    last_wh: Decimal | None = None
    last_at: datetime | None = None
    last_seq_no: int | None = None
    # The register from the previous valid reading, for the power estimate.
    previous_wh: Decimal | None = None
    previous_at: datetime | None = None

    @property
    def energy_wh(self) -> Decimal:
        if self.start_wh is None or self.last_wh is None:
            return Decimal(0)
        return max(self.last_wh - self.start_wh, Decimal(0))

    @property
    def power_w(self) -> Decimal | None:
        """Average power over the latest interval between two valid readings."""
        if None in (self.previous_wh, self.previous_at, self.last_wh, self.last_at):
            return None
        assert self.previous_at and self.last_at and self.previous_wh is not None
        seconds = Decimal(str((self.last_at - self.previous_at).total_seconds()))
        if seconds <= 0 or self.last_wh is None:
            return None
        return ((self.last_wh - self.previous_wh) * 3600 / seconds).quantize(Decimal("0.001"))


@dataclass(frozen=True, slots=True)
class MeteringResult:
    state: MeterState
    anomalies: tuple[Anomaly, ...]
    # How many readings moved the register.
    accepted: int = 0


def start(meter_start_wh: Decimal | None) -> MeterState:
    if meter_start_wh is None:
        return MeterState()
    return MeterState(start_wh=meter_start_wh, last_wh=meter_start_wh)


def apply(
    state: MeterState, readings: Sequence[MeterReading], *, seq_no: int | None = None
) -> MeteringResult:
    """Apply one message's readings to the meter; refused values become anomalies."""
    anomalies: list[Anomaly] = []
    if seq_no is not None:
        if state.last_seq_no is not None and seq_no <= state.last_seq_no:
            return MeteringResult(
                state,
                (Anomaly("duplicate_seq_no", f"seqNo {seq_no} after {state.last_seq_no}"),),
            )
        state = MeterState(
            state.start_wh,
            state.last_wh,
            state.last_at,
            seq_no,
            state.previous_wh,
            state.previous_at,
        )
    accepted = 0
    if len(readings) > 1:
        readings = sorted(readings, key=lambda r: r.timestamp)
    for reading in readings:
        register, found = register_of(reading)
        anomalies.extend(found)
        if register is None:
            continue
        if state.last_at is not None and reading.timestamp <= state.last_at:
            if _begin(reading):
                continue  # 1.6 transactionData opens with the start's sample again: no news
            if reading.timestamp == state.last_at and register == state.last_wh:
                kind = "duplicate"
            else:
                kind = "out_of_order"
            anomalies.append(
                Anomaly(kind, f"reading at {reading.timestamp.isoformat()}", reading.timestamp)
            )
            continue
        if state.last_wh is not None and register < state.last_wh:
            anomalies.append(
                Anomaly(
                    "backwards",
                    f"register {register} Wh after {state.last_wh} Wh",
                    reading.timestamp,
                )
            )
            continue
        state = MeterState(  # not dataclasses.replace: this runs for every reading
            start_wh=register if state.start_wh is None else state.start_wh,
            last_wh=register,
            last_at=reading.timestamp,
            last_seq_no=state.last_seq_no,
            previous_wh=state.last_wh if state.last_at is not None else None,
            previous_at=state.last_at,
        )
        accepted += 1
    return MeteringResult(state, tuple(anomalies), accepted)


def _begin(reading: MeterReading) -> bool:
    return all(v.context is ReadingContext.TRANSACTION_BEGIN for v in reading.values)


def stop(state: MeterState, meter_stop_wh: Decimal | None, at: datetime) -> MeteringResult:
    """Apply the meter stop of the end message (after its transaction data)."""
    if meter_stop_wh is None:
        return MeteringResult(state, ())
    if state.last_wh is not None and meter_stop_wh < state.last_wh:
        anomaly = Anomaly("backwards", f"meter stop {meter_stop_wh} Wh < {state.last_wh} Wh", at)
        return MeteringResult(state, (anomaly,))
    return MeteringResult(
        replace(
            state,
            start_wh=meter_stop_wh if state.start_wh is None else state.start_wh,
            last_wh=meter_stop_wh,
            last_at=max(at, state.last_at) if state.last_at else at,
        ),
        (),
        1,
    )
