"""Resolving a hold of unknown outcome: decided from what Stripe says, never by replaying."""

from __future__ import annotations

import pytest

from station.domain.payment import HoldDecision, refund_due, resolve_hold


def test_no_payment_intent_means_no_hold() -> None:
    assert resolve_hold(None, may_adopt=True) is HoldDecision.NO_HOLD
    assert resolve_hold(None, may_adopt=False) is HoldDecision.NO_HOLD


def test_a_placed_hold_is_adopted_only_while_the_session_can_still_use_it() -> None:
    assert resolve_hold("requires_capture", may_adopt=True) is HoldDecision.ADOPT
    assert resolve_hold("requires_capture", may_adopt=False) is HoldDecision.RELEASE


@pytest.mark.parametrize(
    "status", ["requires_action", "requires_confirmation", "requires_payment_method"]
)
def test_an_open_intent_that_is_not_a_hold_is_released(status: str) -> None:
    assert resolve_hold(status, may_adopt=True) is HoldDecision.RELEASE


@pytest.mark.parametrize("status", ["canceled", "succeeded", "processing"])
def test_a_closed_intent_is_only_recorded(status: str) -> None:
    assert resolve_hold(status, may_adopt=True) is HoldDecision.RECORD


def test_a_charge_found_placed_is_adopted_or_refunded_never_cancelled() -> None:
    assert resolve_hold("succeeded", may_adopt=True, charged=True) is HoldDecision.ADOPT
    assert resolve_hold("succeeded", may_adopt=False, charged=True) is HoldDecision.REFUND
    assert resolve_hold("succeeded", may_adopt=True) is HoldDecision.RECORD  # not a hold
    assert resolve_hold("requires_capture", may_adopt=True, charged=True) is HoldDecision.RECORD


def test_a_charge_gives_back_what_was_not_used() -> None:
    assert refund_due(1000, 620) == 380
    assert refund_due(1000, 1000) == 0
    assert refund_due(1000, 1200) == 0  # never a negative refund
    assert refund_due(1000, -5) == 1000
