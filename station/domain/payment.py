"""Payment decisions under faults: what to do with a hold whose outcome was unknown.

A hold request that timed out, or whose answer was lost to a crash or a
database outage, is resolved by looking: the station finds the
PaymentIntent Stripe made for the session (if any) and decides from what
Stripe says, never by sending the request again::

    found      may_adopt   decision
    none       –           NO_HOLD   the session ends without a hold
    requires_capture yes   ADOPT     record it; the session proceeds
    requires_capture no    RELEASE   cancel it; the session ends without a hold
    requires_action / requires_confirmation / requires_payment_method
               –           RELEASE   not a usable hold, but still open: cancel it
    anything else (canceled, succeeded, processing)
               –           RECORD    note what Stripe has; nothing to cancel

``NO_HOLD`` is only a conclusion once no request can still be in flight
(the caller's timeout has passed); before that, "none" means "not yet".

On the ``charge`` intent the payment is captured at once, so what is found
placed is ``succeeded``: adopted when it may be, else ``REFUND`` (refunded in
full, through a refund intent recorded before the call).
"""

from __future__ import annotations

from enum import StrEnum


class HoldDecision(StrEnum):
    ADOPT = "adopt"
    RELEASE = "release"
    NO_HOLD = "no_hold"
    RECORD = "record"
    REFUND = "refund"


HOLD_PLACED = "requires_capture"
CHARGE_PLACED = "succeeded"  # the charge intent: automatic capture
_CANCELLABLE = frozenset({"requires_action", "requires_confirmation", "requires_payment_method"})


def resolve_hold(
    found_status: str | None, *, may_adopt: bool, charged: bool = False
) -> HoldDecision:
    """Decide what to do with the PaymentIntent found for a hold of unknown outcome.

    `charged`: the request was a ``charge`` (automatic capture), not a hold.
    """
    if found_status is None:
        return HoldDecision.NO_HOLD
    if charged and found_status == CHARGE_PLACED:
        return HoldDecision.ADOPT if may_adopt else HoldDecision.REFUND
    if found_status == HOLD_PLACED and not charged:
        return HoldDecision.ADOPT if may_adopt else HoldDecision.RELEASE
    if found_status in _CANCELLABLE:
        return HoldDecision.RELEASE
    return HoldDecision.RECORD


def refund_due(charged_minor: int, final_minor: int) -> int:
    """What a ``charge`` session gives back: the charge minus the final amount (≥ 0)."""
    return max(charged_minor - max(final_minor, 0), 0)
