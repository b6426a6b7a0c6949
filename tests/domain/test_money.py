"""Money: exact Decimal amounts, one rounding rule, wire parsing that only refuses."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from station.domain.money import Money, MoneyError, parse_decimal


@given(st.text(max_size=60))
def test_any_text_either_parses_or_is_refused_as_money_error(text: str) -> None:
    try:
        value = Money.parse(text, "usd")
    except MoneyError:
        return

    assert value.amount == value.amount.quantize(Decimal("0.01"))


@pytest.mark.parametrize(
    "text",
    [
        *("9" * 40, "1" + "0" * 30 + ".5", "9" * 27 + ".99"),
        *("1e3", "NaN", "-Infinity", "", "1.2.3", "0x10"),
        *("١٢٣", "１２", "12\u00a0"),  # digits and spaces that are not ASCII
    ],
)
def test_amounts_that_are_not_money_are_refused(text: str) -> None:
    with pytest.raises(MoneyError):
        Money.parse(text, "usd")


def test_more_places_than_the_currency_has_are_refused_but_trailing_zeros_are_fine() -> None:
    assert Money.parse("12.50", "usd").amount == Decimal("12.50")
    assert Money.parse("12.5000", "usd").amount == Decimal("12.5")
    with pytest.raises(MoneyError):
        Money.parse("12.345", "usd")
    assert Money.parse("1200", "jpy").to_minor_units() == 1200


@given(st.decimals(min_value=0, max_value=10**6, places=6))
def test_rounding_is_half_up_to_the_minor_unit_once(amount: Decimal) -> None:
    rounded = Money(amount, "usd").rounded()

    assert abs(rounded.amount - amount) <= Decimal("0.005")
    assert rounded.rounded() == rounded
    assert Money.from_minor_units(rounded.to_minor_units(), "usd") == rounded


@pytest.mark.parametrize("value", [0.1, True, None, [1], {"amount": 1}, (1, 2)])
def test_json_values_that_are_not_decimal_strings_are_refused(value: object) -> None:
    with pytest.raises(MoneyError):
        parse_decimal(value)  # type: ignore[arg-type]


def test_unrounded_amounts_cannot_leave_for_stripe() -> None:
    with pytest.raises(MoneyError):
        Money(Decimal("1.005"), "usd").to_minor_units()
    assert Money(Decimal("1.005"), "usd").rounded().to_minor_units() == 101
