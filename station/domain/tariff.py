"""The tariff: what a kWh, an hour, an idle minute and a session cost.

A `Tariff` is the priced terms of one session (PROTOCOL §2 shape on the
wire). It exports to the two shapes the industry already reads: OCPP 2.1
``TariffType`` and OCPI 2.2.1 tariff price components. Prices are exact
`Decimal`s (per kWh up to 4 places); nothing here rounds an amount.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any

from station.domain.money import Money, MoneyError, check_currency, parse_decimal

PRICE_PLACES = 4
_Q4 = Decimal("0.0001")
_Q2 = Decimal("0.01")


@dataclass(frozen=True, slots=True)
class Tariff:
    currency: str
    energy_price_per_kwh: Decimal
    session_fee: Decimal = Decimal(0)
    time_price_per_hour: Decimal = Decimal(0)
    idle_fee_per_minute: Decimal = Decimal(0)
    idle_grace_minutes: int = 0
    max_power_kw: Decimal | None = None
    min_cost: Decimal | None = None
    max_cost: Decimal | None = None
    tariff_id: str = "default"

    def __post_init__(self) -> None:
        check_currency(self.currency)
        for name in ("energy_price_per_kwh", "session_fee", "time_price_per_hour",
                     "idle_fee_per_minute"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, Decimal) or not value.is_finite() or value < 0:
                raise MoneyError(f"{name} must be a non-negative Decimal, got {value!r}")
        if self.idle_grace_minutes < 0:
            raise MoneyError("idle_grace_minutes must not be negative")
        if self.max_power_kw is not None and self.max_power_kw <= 0:
            raise MoneyError("max_power_kw must be positive")
        for name in ("min_cost", "max_cost"):
            value = getattr(self, name)
            if value is not None and (not value.is_finite() or value < 0):
                raise MoneyError(f"{name} must be a non-negative Decimal")
        if (self.min_cost is not None and self.max_cost is not None
                and self.min_cost > self.max_cost):  # fmt: skip
            raise MoneyError("min_cost above max_cost")

    def with_energy_price(self, price_per_kwh: Decimal) -> Tariff:
        return replace(self, energy_price_per_kwh=price_per_kwh)

    @property
    def minimum(self) -> Money:
        """The least a session under this tariff can cost (fee or minimum cost)."""
        floor = max(self.session_fee, self.min_cost or Decimal(0))
        if self.max_cost is not None:
            floor = min(floor, self.max_cost)
        return Money(floor, self.currency).rounded()

    # -- the wire (PROTOCOL §2) ------------------------------------------------

    def to_wire(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "currency": self.currency,
            "energy_price_per_kwh": str(self.energy_price_per_kwh.quantize(_Q4)),
            "session_fee": str(self.session_fee.quantize(_Q2)),
            "time_price_per_hour": str(self.time_price_per_hour.quantize(_Q2)),
            "idle_fee_per_minute": str(self.idle_fee_per_minute.quantize(_Q2)),
            "idle_grace_minutes": self.idle_grace_minutes,
        }
        if self.max_power_kw is not None:
            doc["max_power_kw"] = _plain(self.max_power_kw)
        if self.min_cost is not None:
            doc["min_cost"] = str(self.min_cost.quantize(_Q2))
        if self.max_cost is not None:
            doc["max_cost"] = str(self.max_cost.quantize(_Q2))
        return doc

    @classmethod
    def from_wire(cls, doc: dict[str, Any], *, tariff_id: str = "default") -> Tariff:
        """Parse the PROTOCOL §2 shape; raises MoneyError (or KeyError) on bad input."""

        def dec(name: str, default: str | None = None, places: int = PRICE_PLACES) -> Decimal:
            value = doc.get(name, default)
            if value is None:
                raise MoneyError(f"{name} is required")
            return parse_decimal(value, places=places)

        def opt(name: str) -> Decimal | None:
            value = doc.get(name)
            return None if value is None else parse_decimal(value, places=PRICE_PLACES)

        grace = doc.get("idle_grace_minutes", 0)
        if isinstance(grace, bool) or not isinstance(grace, int):
            raise MoneyError("idle_grace_minutes must be an integer")
        return cls(
            currency=check_currency(str(doc.get("currency", ""))),
            energy_price_per_kwh=dec("energy_price_per_kwh"),
            session_fee=dec("session_fee", "0"),
            time_price_per_hour=dec("time_price_per_hour", "0"),
            idle_fee_per_minute=dec("idle_fee_per_minute", "0"),
            idle_grace_minutes=grace,
            max_power_kw=opt("max_power_kw"),
            min_cost=opt("min_cost"),
            max_cost=opt("max_cost"),
            tariff_id=str(doc.get("tariff_id", tariff_id)),
        )

    # -- OCPP 2.1 TariffType -----------------------------------------------------

    def to_ocpp21(self) -> dict[str, Any]:
        """OCPP 2.1 ``TariffType`` (numbers as floats: the OCPP JSON schema wants numbers).

        The conversion to float is the edge: prices have at most 4 decimals and
        round-trip exactly through a double's shortest repr.
        """
        doc: dict[str, Any] = {
            "tariffId": self.tariff_id[:60],
            "currency": self.currency.upper(),
            "energy": {"prices": [{"priceKwh": float(self.energy_price_per_kwh)}]},
        }
        if self.session_fee:
            doc["fixedFee"] = {"prices": [{"priceFixed": float(self.session_fee)}]}
        if self.time_price_per_hour:
            per_minute = self.time_price_per_hour / 60
            doc["chargingTime"] = {"prices": [{"priceMinute": float(per_minute)}]}
        if self.idle_fee_per_minute:
            price: dict[str, Any] = {"priceMinute": float(self.idle_fee_per_minute)}
            if self.idle_grace_minutes:
                price["conditions"] = {"minIdleTime": self.idle_grace_minutes * 60}
            doc["idleTime"] = {"prices": [price]}
        if self.min_cost is not None:
            doc["minCost"] = {"exclTax": float(self.min_cost)}
        if self.max_cost is not None:
            doc["maxCost"] = {"exclTax": float(self.max_cost)}
        return doc

    # -- OCPI 2.2.1 Tariff ---------------------------------------------------------

    def to_ocpi(self, *, country_code: str, party_id: str, last_updated: str) -> dict[str, Any]:
        """OCPI 2.2.1 ``Tariff`` object; price components per OCPI units (kWh, hours, minutes)."""
        components: list[dict[str, Any]] = [
            {"type": "ENERGY", "price": _num(self.energy_price_per_kwh), "step_size": 1}
        ]
        if self.session_fee:
            components.append({"type": "FLAT", "price": _num(self.session_fee), "step_size": 1})
        if self.time_price_per_hour:
            components.append(
                {"type": "TIME", "price": _num(self.time_price_per_hour), "step_size": 1}
            )
        elements: list[dict[str, Any]] = [{"price_components": components}]
        if self.idle_fee_per_minute:
            # OCPI prices PARKING_TIME per hour; the grace period becomes a restriction.
            parking = {
                "type": "PARKING_TIME",
                "price": _num(self.idle_fee_per_minute * 60),
                "step_size": 60,
            }
            element: dict[str, Any] = {"price_components": [parking]}
            if self.idle_grace_minutes:
                element["restrictions"] = {"min_duration": self.idle_grace_minutes * 60}
            elements.append(element)
        doc: dict[str, Any] = {
            "country_code": country_code,
            "party_id": party_id,
            "id": self.tariff_id[:36],
            "currency": self.currency.upper(),
            "elements": elements,
            "last_updated": last_updated,
        }
        if self.min_cost is not None:
            doc["min_price"] = {"excl_vat": _num(self.min_cost)}
        if self.max_cost is not None:
            doc["max_price"] = {"excl_vat": _num(self.max_cost)}
        return doc


def _num(value: Decimal) -> float:
    return float(value)


def _plain(value: Decimal) -> str:
    text = format(value.normalize(), "f")
    return text
