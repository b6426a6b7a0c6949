"""A session's settlement intent: capture, cancel or refund, and how much.

The intent is written before Stripe is called (the point of no return) and
there is exactly one per session. `final_amount` is the rule that sets it:

- a session that delivered nothing, or cost nothing, captures nothing: its
  hold is cancelled (``authorize``) or the whole charge refunded (``charge``);
- otherwise the cost of what was metered, rounded once, at most the cap, is
  captured (``authorize``), or the cap minus it refunded (``charge``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from station.domain.money import Money
from station.domain.payment import refund_due


class SettlementAction(StrEnum):
    CAPTURE = "capture"
    CANCEL = "cancel"
    REFUND = "refund"


class SettlementState(StrEnum):
    PENDING = "pending"  # intended; Stripe not called, or its outcome not recorded
    DONE = "done"


@dataclass(frozen=True, slots=True)
class Settlement:
    """The intent (one per session), then its outcome. A refund's `amount` is what goes
    back; the Stripe call is built from this value alone, the same on every try."""

    action: SettlementAction
    amount: Money
    payment_reference: str
    idempotency_key: str
    node_id: str  # the node that intended it (its own pending ones are stale at its start)
    created_at: datetime
    state: SettlementState = SettlementState.PENDING
    attempts: int = 0
    last_error: str | None = None
    completed_at: datetime | None = None
    refund_reference: str | None = None  # re_…, once done

    @property
    def done(self) -> bool:
        return self.state is SettlementState.DONE


def settle_key(session_id: str) -> str:
    """The idempotency key of a hold's capture or cancel."""
    return f"settle_{session_id}"


def refund_key(session_id: str) -> str:
    """The idempotency key of a charge session's refund (there is at most one)."""
    return f"refund_{session_id}"


def final_amount(cap: Money, cost: Money, *, delivered: bool) -> Money:
    """What the session pays: its cost (already rounded once) at most the cap, or nothing
    when nothing was delivered or it cost nothing."""
    if not delivered or cost.amount <= 0:
        return cap * 0
    return cost.min(cap)


def intended(cap: Money, final: Money, *, charged: bool) -> tuple[SettlementAction, Money]:
    """The settlement of paying `final` of `cap`: a capture or a cancel of the hold, or
    (``charge``) the refund of what was not used."""
    if charged:
        back = refund_due(cap.rounded().to_minor_units(), final.rounded().to_minor_units())
        return SettlementAction.REFUND, Money.from_minor_units(back, cap.currency)
    if final.amount > 0:
        return SettlementAction.CAPTURE, final
    return SettlementAction.CANCEL, final
