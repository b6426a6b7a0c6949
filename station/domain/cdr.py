"""A settled session as an OCPI 2.2.1 CDR (charge detail record), and as a CSV row.

Built from the session's signed receipt (PROTOCOL §4), so a CDR says exactly
what the driver was charged: its ``total_cost`` is the receipt's ``captured``
amount, and the energy, fixed and time costs are the receipt's cost lines.

chargepay knows a charge point by its id and EVSE, not by street address:
``cdr_location`` carries the id, EVSE and connector; address, city, country
and coordinates come from the operator's location data (``location``), and
are empty when none is given.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from station.domain.tariff import Tariff

CSV_COLUMNS = (
    "session_id",
    "charge_point_id",
    "started_at",
    "stopped_at",
    "energy_kwh",
    "price_per_kwh",
    "fees",
    "total",
    "cap",
    "captured",
    "released",
    "currency",
    "payment_reference",
)
_FIXED = {"session_fee", "minimum", "maximum", "cap"}


def _amount(lines: list[dict[str, Any]], kinds: set[str]) -> Decimal:
    return sum((Decimal(line["amount"]) for line in lines if line["kind"] in kinds), Decimal(0))


def csv_row(receipt: dict[str, Any]) -> dict[str, str]:
    """One settled session as a flat row: energy × price + fees = total."""
    lines = receipt["cost_lines"]
    energy_price = receipt["tariff"].get("energy_price_per_kwh", "")
    fees = sum((Decimal(x["amount"]) for x in lines if x["kind"] != "energy"), Decimal(0))
    row = {name: str(receipt.get(name) or "") for name in CSV_COLUMNS}
    row.update(price_per_kwh=str(energy_price), fees=str(fees))
    return row


def _hours(start: str | None, end: str | None) -> float:
    if not start or not end:
        return 0.0
    delta = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    return round(max(delta.total_seconds(), 0) / 3600, 4)


def to_ocpi_cdr(
    receipt: dict[str, Any],
    *,
    country_code: str,
    party_id: str,
    evse_id: int = 1,
    location: dict[str, Any] | None = None,
    last_updated: str,
) -> dict[str, Any]:
    """The OCPI 2.2.1 ``CDR`` object of one settled session's receipt."""
    lines: list[dict[str, Any]] = receipt["cost_lines"]
    currency = str(receipt["currency"])
    tariff = Tariff.from_wire({**receipt["tariff"], "currency": currency})
    started, stopped = receipt.get("started_at"), receipt.get("stopped_at")
    cp = str(receipt["charge_point_id"])
    place = location or {}
    energy_cost = _amount(lines, {"energy"})
    fixed_cost = _amount(lines, _FIXED)
    time_cost = _amount(lines, {"time"})
    parking_cost = _amount(lines, {"idle"})
    period: dict[str, Any] = {
        "start_date_time": started,
        "dimensions": [{"type": "ENERGY", "volume": float(Decimal(receipt["energy_kwh"]))}],
        "tariff_id": tariff.tariff_id[:36],
    }
    return {
        "country_code": country_code,
        "party_id": party_id,
        "id": str(receipt["session_id"])[:39],
        "start_date_time": started,
        "end_date_time": stopped,
        "session_id": str(receipt["session_id"])[:36],
        "cdr_token": {
            "country_code": country_code,
            "party_id": party_id,
            "uid": str(receipt["session_id"])[:36],
            "type": "APP_USER",
            "contract_id": str(receipt.get("payment_reference") or receipt["session_id"])[:36],
        },
        "auth_method": "COMMAND",
        "cdr_location": {
            "id": cp[:36],
            "name": place.get("name", cp),
            "address": place.get("address", ""),
            "city": place.get("city", ""),
            "postal_code": place.get("postal_code", ""),
            "country": place.get("country", ""),
            "coordinates": place.get("coordinates", {"latitude": "", "longitude": ""}),
            "evse_uid": f"{cp}-{evse_id}"[:36],
            "evse_id": f"{cp}*{evse_id}"[:48],
            "connector_id": "1",
            "connector_standard": place.get("connector_standard", "IEC_62196_T2_COMBO"),
            "connector_format": place.get("connector_format", "CABLE"),
            "connector_power_type": place.get("connector_power_type", "DC"),
        },
        "currency": currency.upper(),
        "tariffs": [
            tariff.to_ocpi(country_code=country_code, party_id=party_id, last_updated=last_updated)
        ],
        "charging_periods": [period],
        "total_cost": {"excl_vat": float(Decimal(receipt["captured"]))},
        "total_fixed_cost": {"excl_vat": float(fixed_cost)},
        "total_energy": float(Decimal(receipt["energy_kwh"])),
        "total_energy_cost": {"excl_vat": float(energy_cost)},
        "total_time": _hours(started, stopped),
        "total_time_cost": {"excl_vat": float(time_cost)},
        "total_parking_cost": {"excl_vat": float(parking_cost)},
        "last_updated": last_updated,
    }
