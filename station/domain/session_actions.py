"""What the services do for a session: the actions `decide` returns (imperative values).

The services carry them out in the order given, after the new session is saved:
OCPP commands to the charge point, Stripe calls, events to the agent, the
spending allowance, the audit log and anomalies.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from station.domain.cap import ChargingLimit
from station.domain.money import Money
from station.domain.session import SessionStatus

# -- the charge point --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class StopCharging:
    """Stop the transaction (`again`: a stop was sent before)."""

    charge_point_id: str
    transaction_ref: str
    again: bool = False


@dataclass(frozen=True, slots=True)
class SetLimit:
    charge_point_id: str
    transaction_ref: str
    limit: ChargingLimit


@dataclass(frozen=True, slots=True)
class PushCost:
    """Tell the charge point the running cost (2.x CostUpdated)."""

    charge_point_id: str
    transaction_ref: str
    cost: Money


@dataclass(frozen=True, slots=True)
class Reject:
    """The reported transaction is not this session's: refuse its id token."""


# -- money -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlaceHold:
    """The hold (``manual``) or the charge (``automatic``) for the cap: built from the
    stored session alone, so every try carries the same parameters and key."""

    amount_minor: int
    currency: str
    source_kind: str
    source_value: str
    idempotency_key: str
    metadata: Mapping[str, str]
    capture_method: str


@dataclass(frozen=True, slots=True)
class Capture:
    reference: str
    amount: Money
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Cancel:
    reference: str
    idempotency_key: str


@dataclass(frozen=True, slots=True)
class Refund:
    """Give `amount` of a charge back (nothing to give back: no call, only the record)."""

    reference: str
    amount: Money
    idempotency_key: str
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class RefundCharge:
    """A charge this session will not use: refund it all (`ChargeRefundDue`)."""

    reference: str
    detail: str


@dataclass(frozen=True, slots=True)
class SettleAllowance:
    """Close the agent's spending reservation at what was `spent`."""

    spent: Decimal


@dataclass(frozen=True, slots=True)
class RequestSettlement:
    """Queue the session for the settlement worker (charging is over)."""


@dataclass(frozen=True, slots=True)
class Settle:
    """Settle now, in this request (a stop before the transaction began, or after it
    ended), keeping `reason`."""

    reason: str | None


@dataclass(frozen=True, slots=True)
class ReleaseStopped:
    """Stopped while its hold was requested: the hold is released, nothing starts."""

    status: SessionStatus
    stop_reason: str | None


# -- records and the agent ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Audit:
    action: str
    data: Mapping[str, Any]
    actor: str = "system"


@dataclass(frozen=True, slots=True)
class RecordAnomaly:
    kind: str
    detail: str
    transaction_id: int | None
    at: datetime | None


@dataclass(frozen=True, slots=True)
class Log:
    event: str
    level: str = "info"
    fields: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PublishStatus:
    status: SessionStatus


@dataclass(frozen=True, slots=True)
class PublishMeter:
    energy_wh: Decimal
    power_w: Decimal | None
    cost: Money
    cap: Money
    at: datetime


@dataclass(frozen=True, slots=True)
class PublishSettled:
    """The session's final event: its receipt when settled, else its status."""

    status: SessionStatus


SessionAction = (
    StopCharging
    | SetLimit
    | PushCost
    | Reject
    | PlaceHold
    | Capture
    | Cancel
    | Refund
    | RefundCharge
    | SettleAllowance
    | RequestSettlement
    | Settle
    | ReleaseStopped
    | Audit
    | RecordAnomaly
    | Log
    | PublishStatus
    | PublishMeter
    | PublishSettled
)
