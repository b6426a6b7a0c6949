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
"""

from __future__ import annotations

from enum import StrEnum


class HoldDecision(StrEnum):
    ADOPT = "adopt"
    RELEASE = "release"
    NO_HOLD = "no_hold"
    RECORD = "record"


HOLD_PLACED = "requires_capture"
_CANCELLABLE = frozenset({"requires_action", "requires_confirmation", "requires_payment_method"})


def resolve_hold(found_status: str | None, *, may_adopt: bool) -> HoldDecision:
    """Decide what to do with the PaymentIntent found for a hold of unknown outcome."""
    if found_status is None:
        return HoldDecision.NO_HOLD
    if found_status == HOLD_PLACED:
        return HoldDecision.ADOPT if may_adopt else HoldDecision.RELEASE
    if found_status in _CANCELLABLE:
        return HoldDecision.RELEASE
    return HoldDecision.RECORD
