"""Builders of the station's wire documents, as PROTOCOL.md spells them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def tariff_doc(price: str = "0.4500", **over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "currency": "usd",
        "energy_price_per_kwh": price,
        "session_fee": "0.50",
        "time_price_per_hour": "0.00",
        "idle_fee_per_minute": "0.10",
        "idle_grace_minutes": 10,
        "max_power_kw": "150",
    }
    doc.update(over)
    return doc


def offer_doc(
    price: str = "0.4500",
    *,
    offer_id: str = "off_1",
    estimated: str | None = None,
    cap: str | None = None,
    energy_kwh: str = "30",
    valid_for: timedelta = timedelta(minutes=5),
    **tariff_over: Any,
) -> dict[str, Any]:
    tariff = tariff_doc(price, **tariff_over)
    cost = Decimal(tariff["session_fee"]) + Decimal(energy_kwh) * Decimal(price)
    estimate = estimated or str(cost.quantize(Decimal("0.01")))
    return {
        "offer_id": offer_id,
        "valid_until": (NOW + valid_for).isoformat().replace("+00:00", "Z"),
        "tariff": tariff,
        "estimated_cost": estimate,
        "recommended_cap": cap
        or str((Decimal(estimate) * Decimal("1.1")).quantize(Decimal("0.01"))),
    }


def reply_doc(
    offer: dict[str, Any] | None = None,
    *,
    status: str = "open",
    round_: int = 1,
    max_rounds: int = 5,
    detail: str | None = None,
) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "negotiation_id": "neg_1",
        "status": status,
        "round": round_,
        "max_rounds": max_rounds,
        "expires_at": (NOW + timedelta(minutes=10)).isoformat(),
        "offer": offer if offer is not None or status == "rejected" else offer_doc(),
    }
    if detail:
        doc["detail"] = detail
    return doc


def receipt_doc(**over: Any) -> dict[str, Any]:
    """A consistent receipt: 31.204 kWh at 0.45 + 0.50 fee = 14.54, cap 25.00."""
    doc: dict[str, Any] = {
        "session_id": "ses_1",
        "energy_kwh": "31.204",
        "meter_start_wh": 1200,
        "meter_stop_wh": 32404,
        "tariff": tariff_doc(),
        "cost_lines": [
            {"kind": "energy", "quantity": "31.204", "unit_price": "0.4500", "amount": "14.04"},
            {"kind": "session_fee", "quantity": "1", "unit_price": "0.50", "amount": "0.50"},
        ],
        "total": "14.54",
        "captured": "14.54",
        "released": "10.46",
        "currency": "usd",
        "signature": "sig",
    }
    doc.update(over)
    return doc
