"""The session state machine: only the documented moves."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from station.domain.session import SessionStatus, advance, can_advance
from station.errors import IllegalTransition

S = SessionStatus


def test_the_happy_path_goes_authorized_charging_stopping_settled() -> None:
    status = S.AUTHORIZED

    for target in (S.CHARGING, S.STOPPING, S.SETTLED):
        status = advance(status, target)

    assert status is S.SETTLED and status.final


def test_a_settled_session_never_moves_again() -> None:
    with pytest.raises(IllegalTransition):
        advance(S.SETTLED, S.CHARGING)


def test_charging_cannot_skip_stopping() -> None:
    with pytest.raises(IllegalTransition):
        advance(S.CHARGING, S.SETTLED)


@given(st.sampled_from(S), st.sampled_from(S))
def test_final_states_are_absorbing_and_repeats_are_no_ops(a: S, b: S) -> None:
    if a == b:
        assert advance(a, b) is a
    elif a.final:
        assert not can_advance(a, b)
