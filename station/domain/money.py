"""Money: a `Decimal` amount with a currency, and the one rounding rule.

Amounts stay unrounded (up to the precision of their inputs) while a cost is
being built; `Money.rounded()` applies the house rule — half-up to the
currency's minor unit — once, at the end. Conversions to integer minor units
(Stripe, MPP) happen only at the edges through `to_minor_units`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

# ISO 4217 minor-unit exponents that are not 2.
_EXPONENTS = {
    "bif": 0, "clp": 0, "djf": 0, "gnf": 0, "jpy": 0, "kmf": 0, "krw": 0, "mga": 0,
    "pyg": 0, "rwf": 0, "ugx": 0, "vnd": 0, "vuv": 0, "xaf": 0, "xof": 0, "xpf": 0,
    "bhd": 3, "jod": 3, "kwd": 3, "omr": 3, "tnd": 3,
}  # fmt: skip
_CURRENCY = re.compile(r"^[a-z]{3}$")
# The store keeps amounts as Numeric(18, 4): 14 digits before the point.
MAX_INTEGER_DIGITS = 14
_DECIMAL = re.compile(r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)$")
ROUNDING = ROUND_HALF_UP
# Currencies `check_currency` accepted already (three lower-case letters: at most 17,576).
_CURRENCIES_SEEN: set[str] = set()


class MoneyError(ValueError):
    """An amount or currency that is not money."""


def minor_unit_exponent(currency: str) -> int:
    return _EXPONENTS.get(currency, 2)


def check_currency(currency: str) -> str:
    if not _CURRENCY.match(currency):
        raise MoneyError(f"currency must be three lower-case letters, got {currency!r}")
    return currency


def parse_decimal(text: str | int | Decimal, *, places: int | None = None) -> Decimal:
    """Parse a decimal string from the wire; refuse floats, NaN, infinities, exponents,
    whitespace and non-ASCII digits."""
    if isinstance(text, bool | float):
        raise MoneyError("amounts are decimal strings, not floats")
    # Wire amounts are plain ASCII: no spaces, no exponents, no other digits.
    if isinstance(text, str) and not _DECIMAL.match(text):
        raise MoneyError(f"not a plain decimal number: {text!r}")
    try:
        value = Decimal(text)
    except (InvalidOperation, TypeError, ValueError) as exc:  # a list, a dict, … from JSON
        raise MoneyError(f"not a decimal number: {text!r}") from exc
    if not value.is_finite():
        raise MoneyError(f"not a finite number: {text!r}")
    if value and value.adjusted() >= MAX_INTEGER_DIGITS:
        raise MoneyError(f"at most {MAX_INTEGER_DIGITS} digits before the point: {text!r}")
    # Bounded above, the quantize below fits the default 28-digit context.
    if places is not None and value != value.quantize(Decimal(1).scaleb(-places), ROUNDING):
        raise MoneyError(f"at most {places} decimal places: {text!r}")
    return value


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    def __post_init__(self) -> None:
        if self.currency not in _CURRENCIES_SEEN:  # a Money is made many times a reading
            _CURRENCIES_SEEN.add(check_currency(self.currency))
        if not isinstance(self.amount, Decimal) or not self.amount.is_finite():
            raise MoneyError(f"amount must be a finite Decimal, got {self.amount!r}")

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def parse(cls, amount: str, currency: str) -> Money:
        """A wire amount in major units, at most the currency's minor-unit places."""
        return cls(parse_decimal(amount, places=minor_unit_exponent(currency)), currency)

    @classmethod
    def from_minor_units(cls, minor: int, currency: str) -> Money:
        return cls(Decimal(minor).scaleb(-minor_unit_exponent(currency)), currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise MoneyError(f"currency mismatch: {self.currency} vs {other.currency}")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        return Money(self.amount * factor, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def min(self, other: Money) -> Money:
        return self if self <= other else other

    def max(self, other: Money) -> Money:
        return self if self >= other else other

    def rounded(self) -> Money:
        """The house rounding: half-up to the currency's minor unit."""
        quantum = Decimal(1).scaleb(-minor_unit_exponent(self.currency))
        return Money(self.amount.quantize(quantum, ROUNDING), self.currency)

    def to_minor_units(self) -> int:
        """Integer minor units for Stripe and MPP; the amount must already be rounded."""
        minor = self.amount.scaleb(minor_unit_exponent(self.currency))
        if minor != minor.to_integral_value():
            raise MoneyError(f"{self} is not rounded to the minor unit; call rounded() first")
        return int(minor)

    def to_wire(self) -> str:
        """The API's decimal string: the rounded amount with all minor-unit places."""
        return str(self.rounded().amount)

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"
