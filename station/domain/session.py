"""The charging session's state machine: an enum and guarded transitions.

    authorized ──▶ charging ──▶ stopping ──▶ settled
        │             │            │
        └─────────────┴────────────┴──▶ cancelled (nothing delivered, hold released)
                                       failed (detail says why)

`advance(current, target)` returns the new status or raises
`IllegalTransition`; moving to the status a session already has is allowed
(events can arrive twice) and returns it unchanged.

`Session` is the aggregate: a frozen value holding the terms (tariff, cap),
the metering, the payment and the settlement intent; the rules that move it
are `station.domain.decide`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from station.domain.cost import SessionCost, Usage, session_cost
from station.domain.money import Money
from station.domain.settlement import Settlement
from station.domain.tariff import Tariff
from station.errors import IllegalTransition


class SessionStatus(StrEnum):
    AUTHORIZED = "authorized"
    CHARGING = "charging"
    STOPPING = "stopping"
    SETTLED = "settled"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in _FINAL

    @property
    def can_charge(self) -> bool:
        """May a charge point start or continue energy transfer for this session?"""
        return self in (SessionStatus.AUTHORIZED, SessionStatus.CHARGING)


_FINAL = frozenset({SessionStatus.SETTLED, SessionStatus.CANCELLED, SessionStatus.FAILED})

_ALLOWED: dict[SessionStatus, frozenset[SessionStatus]] = {
    SessionStatus.AUTHORIZED: frozenset(
        {
            SessionStatus.CHARGING,
            SessionStatus.STOPPING,
            SessionStatus.CANCELLED,
            SessionStatus.FAILED,
        }
    ),
    SessionStatus.CHARGING: frozenset({SessionStatus.STOPPING, SessionStatus.FAILED}),
    SessionStatus.STOPPING: frozenset(
        {SessionStatus.SETTLED, SessionStatus.CANCELLED, SessionStatus.FAILED}
    ),
    SessionStatus.SETTLED: frozenset(),
    SessionStatus.CANCELLED: frozenset(),
    SessionStatus.FAILED: frozenset(),
}


def can_advance(current: SessionStatus, target: SessionStatus) -> bool:
    return target == current or target in _ALLOWED[current]


def advance(current: SessionStatus, target: SessionStatus) -> SessionStatus:
    """The status after moving `current` to `target`; raises IllegalTransition if not allowed."""
    if not can_advance(current, target):
        raise IllegalTransition(f"session cannot move from {current} to {target}")
    return target


# -- the aggregate ----------------------------------------------------------------------


class MppIntent(StrEnum):
    """The MPP intent a session is paid on (its stored ``payment_intent``)."""

    AUTHORIZE = "authorize"  # a hold for the cap, captured at the end
    CHARGE = "charge"  # the cap charged at once, the unused part refunded at the end


class PaymentStatus(StrEnum):
    """A session's ``payment_status``: ours while no PaymentIntent is known, else Stripe's."""

    PENDING = "pending"  # the hold request is in flight
    UNKNOWN = "unknown"  # its outcome is unknown: the reconciler resolves it by looking
    DECLINED = "declined"  # the hold was refused
    NONE = "none"  # looked: Stripe made no PaymentIntent
    REFUNDED = "refunded"  # a charge session whose unused part went back
    # Stripe's PaymentIntent statuses, as Stripe spells them.
    REQUIRES_PAYMENT_METHOD = "requires_payment_method"
    REQUIRES_CONFIRMATION = "requires_confirmation"
    REQUIRES_ACTION = "requires_action"
    PROCESSING = "processing"
    REQUIRES_CAPTURE = "requires_capture"
    CANCELED = "canceled"
    SUCCEEDED = "succeeded"

    @property
    def in_doubt(self) -> bool:
        """No PaymentIntent recorded yet, and one may exist (in flight, or not known)."""
        return self in (PaymentStatus.PENDING, PaymentStatus.UNKNOWN)


@dataclass(frozen=True, slots=True)
class Payment:
    """How a session is paid: the intent, Stripe's PaymentIntent and its state."""

    intent: MppIntent
    status: PaymentStatus
    # "payment_method:pm_…" | "spt:spt_…": every try of the hold carries the same source.
    source: str | None
    reference: str | None = None  # the PaymentIntent (pi_…), once known
    payer_method: str | None = None  # an unregistered payer's payment method


@dataclass(frozen=True, slots=True)
class Metering:
    """What the charge point reported for the session's transaction (Wh, its clock)."""

    energy_wh: Decimal = Decimal(0)
    transaction_id: int | None = None
    transaction_ref: str | None = None
    meter_start_wh: Decimal | None = None
    meter_stop_wh: Decimal | None = None
    started_at: datetime | None = None
    stopped_at: datetime | None = None
    last_reading_at: datetime | None = None
    last_active_at: datetime | None = None  # the last reading at which energy flowed

    def usage(self, now: datetime) -> Usage:
        """What the session used: energy, charging time to the end (or the last reading,
        or now), and the idle time since energy last flowed, to the second."""
        if self.started_at is None:
            return Usage(energy_wh=Decimal(0))
        end = self.stopped_at or self.last_reading_at or now
        charging_s = max(Decimal((end - self.started_at).total_seconds()), Decimal(0))
        idle_s = Decimal(0)
        if self.last_active_at is not None:
            idle_s = max(Decimal((end - self.last_active_at).total_seconds()), Decimal(0))
        return Usage(
            energy_wh=max(self.energy_wh, Decimal(0)),
            charging_seconds=charging_s.quantize(_SECOND),
            idle_seconds=idle_s.quantize(_SECOND),
        )


_SECOND = Decimal(1)


@dataclass(frozen=True, slots=True)
class Session:
    """One charging session: who, where, the terms, the metering, the money.

    A frozen value: `station.domain.decide.decide` returns a new one with the
    actions the services carry out. ``tariff_doc`` is the offer's tariff as
    agreed (shown to the agent unchanged); ``tariff`` is its parsed form.
    """

    session_id: str
    agent_id: str
    negotiation_id: str
    offer_id: str
    challenge_id: str
    charge_point_id: str
    evse_id: int
    id_token: str
    remote_start_id: int
    tariff_doc: Mapping[str, Any]
    cap: Money
    status: SessionStatus
    payment: Payment
    created_at: datetime
    updated_at: datetime
    metering: Metering = field(default_factory=Metering)
    cost: Money | None = None  # the running cost, at most the cap (rounded once)
    captured: Money | None = None
    refunded: Money | None = None  # a charge session's unused part, given back
    detail: str | None = None
    stop_reason: str | None = None
    stop_requested_at: datetime | None = None  # when the station first asked for a stop
    settlement: Settlement | None = None  # the one settlement intent, once written

    @property
    def currency(self) -> str:
        return self.cap.currency

    @property
    def tariff(self) -> Tariff:
        return Tariff.from_wire(dict(self.tariff_doc))

    @property
    def charged(self) -> bool:
        """Paid on the ``charge`` intent (the cap charged at once)."""
        return self.payment.intent is MppIntent.CHARGE

    @property
    def never_started(self) -> bool:
        """No transaction reported: authorised, or stopped before its start came (a stop
        never cancels a session whose start may still come)."""
        return (
            self.status in (SessionStatus.AUTHORIZED, SessionStatus.STOPPING)
            and self.metering.transaction_ref is None
            and self.metering.stopped_at is None
        )

    def usage(self, now: datetime) -> Usage:
        return self.metering.usage(now)

    def cost_at(self, now: datetime) -> SessionCost:
        """The session's cost (itemised, rounded once, at most the cap)."""
        return session_cost(self.tariff, self.usage(now), self.cap)

    def receipt_cost(self) -> SessionCost:
        """The cost a settled session's receipt shows (to its end)."""
        return self.cost_at(self.metering.stopped_at or self.updated_at)
