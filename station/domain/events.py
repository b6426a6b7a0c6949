"""What charge points tell the station, the same for every OCPP version.

Each OCPP adapter (`station.ocpp.v16`, `v201`, `v21`) translates its messages
into these events; the rest of the station never asks which version it is
talking to. Energy is normalised to Wh, power to W, as `Decimal`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum


class OcppVersion(StrEnum):
    V16 = "ocpp1.6"
    V201 = "ocpp2.0.1"
    V21 = "ocpp2.1"


class ReadingContext(StrEnum):
    TRANSACTION_BEGIN = "Transaction.Begin"
    SAMPLE_PERIODIC = "Sample.Periodic"
    SAMPLE_CLOCK = "Sample.Clock"
    TRANSACTION_END = "Transaction.End"
    TRIGGER = "Trigger"
    INTERRUPTION_BEGIN = "Interruption.Begin"
    INTERRUPTION_END = "Interruption.End"
    OTHER = "Other"


ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
SOC = "SoC"


@dataclass(frozen=True, slots=True)
class SampledValue:
    """One sampled value, normalised: energy in Wh, power in W.

    ``value`` is None when the charge point sent something that is not a
    number; ``raw`` keeps what it sent so the anomaly can be recorded.
    """

    measurand: str
    value: Decimal | None
    unit: str
    context: ReadingContext = ReadingContext.SAMPLE_PERIODIC
    phase: str | None = None
    raw: str | None = None


@dataclass(frozen=True, slots=True)
class MeterReading:
    """The sampled values a charge point took at one instant."""

    timestamp: datetime
    values: tuple[SampledValue, ...]


@dataclass(frozen=True, slots=True)
class ChargePointBooted:
    charge_point_id: str
    ocpp_version: OcppVersion
    vendor: str
    model: str
    firmware_version: str | None = None
    serial_number: str | None = None


@dataclass(frozen=True, slots=True)
class ConnectorStatusChanged:
    charge_point_id: str
    evse_id: int  # 0 = the charge point as a whole
    connector_id: int
    status: str  # the OCPP status as sent (Available, Charging, Faulted, …)
    timestamp: datetime
    error_code: str | None = None


@dataclass(frozen=True, slots=True)
class TransactionStarted:
    charge_point_id: str
    evse_id: int
    connector_id: int
    id_token: str | None
    timestamp: datetime
    # The charge point's id for 2.x; None for 1.6, where the station assigns it.
    transaction_ref: str | None = None
    meter_start_wh: Decimal | None = None
    remote_start_id: int | None = None
    seq_no: int | None = None
    offline: bool = False
    readings: tuple[MeterReading, ...] = ()


@dataclass(frozen=True, slots=True)
class MeterValuesReported:
    charge_point_id: str
    evse_id: int
    transaction_ref: str | None
    readings: tuple[MeterReading, ...]
    timestamp: datetime
    seq_no: int | None = None
    offline: bool = False


@dataclass(frozen=True, slots=True)
class TransactionEnded:
    charge_point_id: str
    transaction_ref: str
    timestamp: datetime
    meter_stop_wh: Decimal | None = None
    reason: str | None = None
    id_token: str | None = None
    seq_no: int | None = None
    offline: bool = False
    readings: tuple[MeterReading, ...] = field(default=())
