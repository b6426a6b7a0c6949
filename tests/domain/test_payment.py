"""Resolving a hold of unknown outcome: decided from what Stripe says, never by replaying."""

from __future__ import annotations

import pytest

from station.domain.payment import HoldDecision, resolve_hold


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
