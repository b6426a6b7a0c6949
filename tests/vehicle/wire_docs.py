"""A tariff and a consistent receipt as the station sends them (the agent's own tests
have the full set in agent/tests/factories.py)."""

from __future__ import annotations

from datetime import UTC, datetime
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
