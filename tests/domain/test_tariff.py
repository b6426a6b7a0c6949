"""The tariff on the wire, in OCPP 2.1 and in OCPI 2.2.1."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import ocpp.v21
import pytest

from station.domain.money import MoneyError
from station.domain.tariff import Tariff

TARIFF = Tariff(
    currency="usd",
    energy_price_per_kwh=Decimal("0.45"),
    session_fee=Decimal("0.50"),
    idle_fee_per_minute=Decimal("0.10"),
    idle_grace_minutes=10,
    max_power_kw=Decimal(150),
    min_cost=Decimal("1.00"),
)


def test_the_wire_shape_is_protocol_section_2() -> None:
    assert TARIFF.to_wire() == {
        "currency": "usd",
        "energy_price_per_kwh": "0.4500",
        "session_fee": "0.50",
        "time_price_per_hour": "0.00",
        "idle_fee_per_minute": "0.10",
        "idle_grace_minutes": 10,
        "max_power_kw": "150",
        "min_cost": "1.00",
    }


def test_the_wire_shape_round_trips() -> None:
    assert Tariff.from_wire(TARIFF.to_wire()) == TARIFF


def test_floats_on_the_wire_are_refused() -> None:
    with pytest.raises(MoneyError):
        Tariff.from_wire({**TARIFF.to_wire(), "energy_price_per_kwh": 0.45})


def test_ocpp21_export_validates_against_the_schema() -> None:
    import jsonschema

    schemas = Path(ocpp.v21.__file__).parent / "schemas"
    schema = json.loads((schemas / "SetDefaultTariffRequest.json").read_text())

    jsonschema.validate({"evseId": 0, "tariff": TARIFF.to_ocpp21()}, schema)

    assert TARIFF.to_ocpp21()["energy"] == {"prices": [{"priceKwh": 0.45}]}


def test_ocpi_export_has_energy_flat_and_parking_components() -> None:
    doc = TARIFF.to_ocpi(country_code="US", party_id="CPY", last_updated="2026-11-22T00:00:00Z")

    kinds = [c["type"] for e in doc["elements"] for c in e["price_components"]]

    assert kinds == ["ENERGY", "FLAT", "PARKING_TIME"]
    assert doc["min_price"] == {"excl_vat": 1.0}
