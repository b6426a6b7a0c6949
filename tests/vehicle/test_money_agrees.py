"""The agent's money (`vehicle.money`) and the station's (`station.domain.money`) are two
copies of one set of rules, so the agent installs alone: they must give the same answers."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from station.domain import money as station
from vehicle import money as agent

CURRENCIES = st.sampled_from(["usd", "eur", "jpy", "kwd", "USD", "us", "clp"])
TEXTS = st.one_of(
    st.decimals(allow_nan=False, allow_infinity=False, places=4).map(str),
    st.text(alphabet="0123456789.-+e ", max_size=12),
    st.sampled_from(["1e3", "NaN", "Infinity", " 1", "١", "100000000000000", ".5", "5."]),
)


def _outcome(module: object, action: str, *args: object) -> object:
    try:
        if action == "parse":
            return module.Money.parse(*args).to_wire()  # type: ignore[attr-defined]
        if action == "rounded":
            value, currency = args
            return str(module.Money(Decimal(value), currency).rounded())  # type: ignore[attr-defined]
        value, currency = args
        return module.Money.from_minor_units(value, currency).to_minor_units()  # type: ignore[attr-defined]
    except (ValueError, ArithmeticError) as exc:
        return type(exc).__name__


@settings(max_examples=400, deadline=None)
@given(text=TEXTS, currency=CURRENCIES)
def test_parsing_agrees(text: str, currency: str) -> None:
    assert _outcome(agent, "parse", text, currency) == _outcome(station, "parse", text, currency)


@settings(max_examples=300, deadline=None)
@given(
    value=st.decimals(allow_nan=False, allow_infinity=False, places=6, max_value=10**9),
    currency=st.sampled_from(["usd", "jpy", "kwd"]),
)
def test_rounding_agrees(value: Decimal, currency: str) -> None:
    args = (str(value), currency)
    assert _outcome(agent, "rounded", *args) == _outcome(station, "rounded", *args)


@pytest.mark.parametrize("currency", ["usd", "jpy", "kwd"])
@pytest.mark.parametrize("minor", [0, 1, 99, 12345, -7])
def test_minor_units_agree(minor: int, currency: str) -> None:
    assert _outcome(agent, "minor", minor, currency) == _outcome(station, "minor", minor, currency)


def test_the_exponent_tables_are_the_same() -> None:
    assert agent._EXPONENTS == station._EXPONENTS
    assert agent.MAX_INTEGER_DIGITS == station.MAX_INTEGER_DIGITS
