"""What happens to a session: the events `decide` takes (past tense, plain values).

Every event carries ``at``, the station's clock when it was observed. Events
that may write the settlement intent carry the deciding node's id.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from station.domain.payment import HoldDecision


@dataclass(frozen=True, slots=True)
class TransactionReport:
    """A transaction as the charge point reported it (after charging committed it)."""

    charge_point_id: str
    transaction_id: int
    transaction_ref: str
    evse_id: int
    started_at: datetime
    energy_wh: Decimal  # delivered so far, from validated register readings
    meter_start_wh: Decimal | None = None
    last_reading_at: datetime | None = None
    power_w: Decimal | None = None  # the average over the latest sample interval
    stopped_at: datetime | None = None
    stop_reason: str | None = None


# -- charging ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Metered:
    """A reading of a live transaction. `can_limit`: the charge point takes a charging
    limit (OCPP 1.6 and 2.0.1; 2.1 holds ``maxCost`` itself)."""

    transaction: TransactionReport
    at: datetime
    can_limit: bool = False


@dataclass(frozen=True, slots=True)
class TransactionEnded:
    transaction: TransactionReport
    at: datetime


@dataclass(frozen=True, slots=True)
class StopRequested:
    """The agent or the operator asked for the charge to stop."""

    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class Suspended:
    """The agent was suspended (the kill switch): the charge stops, for that reason."""

    at: datetime


# -- settlement --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SettlementDue:
    """Charging is over (or never began): settle. `reason` is kept as the stop reason
    when the session has none."""

    at: datetime
    node_id: str
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class StartTimedOut:
    """Authorised long ago and never started: settle, unless a start came meanwhile."""

    at: datetime
    node_id: str


@dataclass(frozen=True, slots=True)
class WentSilent:
    """Its charge point has been silent: settle for what was metered, unless the session
    was heard of at or after `quiet_since`."""

    quiet_since: datetime
    at: datetime
    node_id: str


@dataclass(frozen=True, slots=True)
class StopsIgnored:
    """The charge point ignored the stops sent since `asked_at`: the station ends the
    session (what it delivers after is not billed)."""

    asked_at: datetime
    at: datetime
    node_id: str


@dataclass(frozen=True, slots=True)
class ChargeRefundDue:
    """A charge made for the session that it will not use (found after an unknown
    outcome, or late): refund it all."""

    reference: str
    detail: str
    at: datetime
    node_id: str


# -- payment outcomes --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HoldPlaced:
    """Stripe placed the hold (or made the charge) `reference`, in `status`."""

    reference: str
    status: str
    amount_minor: int
    at: datetime


@dataclass(frozen=True, slots=True)
class HoldFailed:
    """Stripe refused the hold."""

    code: str
    detail: str
    at: datetime


@dataclass(frozen=True, slots=True)
class HoldUnknown:
    """The hold request's outcome is unknown (timeout, outage) and looking found none to
    adopt: the reconciler owns it from now."""

    code: str
    detail: str
    at: datetime


@dataclass(frozen=True, slots=True)
class HoldClaimed:
    """The reconciler takes over a hold of unknown outcome (no accept may adopt it now)."""

    at: datetime


@dataclass(frozen=True, slots=True)
class HoldRecovered:
    """The reconciler looked for the hold: `reference`/`status` as found (None: Stripe
    made none), and what it did (`decision`)."""

    reference: str | None
    status: str | None
    decision: HoldDecision
    at: datetime


@dataclass(frozen=True, slots=True)
class HoldReleased:
    """The open hold of an ended session was looked at and released: Stripe's status."""

    status: str
    at: datetime


@dataclass(frozen=True, slots=True)
class PaymentSettled:
    """The capture or cancel's outcome, as Stripe reports the PaymentIntent."""

    reference: str
    status: str
    captured_minor: int
    at: datetime


@dataclass(frozen=True, slots=True)
class Refunded:
    """A charge session's refund: Stripe's refund (None: nothing was to go back)."""

    reference: str | None
    status: str | None
    amount_minor: int
    at: datetime


@dataclass(frozen=True, slots=True)
class SettlementDeferred:
    """Stripe could not be reached (or its outcome is unknown): the intent stays pending
    for the reconciler."""

    error: str
    at: datetime


SessionEvent = (
    Metered
    | TransactionEnded
    | StopRequested
    | Suspended
    | SettlementDue
    | StartTimedOut
    | WentSilent
    | StopsIgnored
    | ChargeRefundDue
    | HoldPlaced
    | HoldFailed
    | HoldUnknown
    | HoldClaimed
    | HoldRecovered
    | HoldReleased
    | PaymentSettled
    | Refunded
    | SettlementDeferred
)
