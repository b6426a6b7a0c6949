"""The agent's receipt check against receipts priced by the station's own domain.

These cross-checks import `station.domain` (pure), so they live with the station's
tests, not in the agent distribution's own test module.
"""

import base64
import json
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from station.domain.cost import Usage, session_cost
from station.domain.money import Money as StationMoney
from station.domain.tariff import Tariff as StationTariff
from tests.vehicle.wire_docs import receipt_doc, tariff_doc
from vehicle.money import Money
from vehicle.receipt import AgreedSession, verify_receipt
from vehicle.terms import Tariff


def header(**over: Any) -> str:
    doc = {"status": "success", "method": "stripe", "timestamp": "2026-11-22T12:00:00Z",
           "reference": "pi_123"} | over  # fmt: skip
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


@settings(max_examples=300, deadline=None)
@given(
    energy_wh=st.integers(min_value=0, max_value=150_000),
    price=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1.5"), places=4),
    time_price=st.sampled_from(["0.00", "1.20", "7.77"]),
    charging_s=st.integers(min_value=0, max_value=20_000),
    idle_s=st.integers(min_value=0, max_value=5_000),
    bounds=st.sampled_from([{}, {"min_cost": "5.00"}, {"max_cost": "20.00"}]),
)
def test_a_receipt_priced_by_the_station_domain_is_accepted(
    energy_wh: int,
    price: Decimal,
    time_price: str,
    charging_s: int,
    idle_s: int,
    bounds: dict[str, str],
) -> None:
    """Cross-check with the station's own pricing (station.domain.cost, pure)."""
    wire = tariff_doc(str(price), time_price_per_hour=time_price, **bounds)
    cap = StationMoney.parse("30.00", "usd")
    usage = Usage(Decimal(energy_wh), Decimal(charging_s), Decimal(idle_s))
    cost = session_cost(StationTariff.from_wire(wire), usage, cap)
    doc = receipt_doc(
        energy_kwh=str((Decimal(energy_wh) / 1000).quantize(Decimal("0.001"))),
        meter_start_wh=0,
        meter_stop_wh=energy_wh,
        tariff=wire,
        cost_lines=[line.to_wire() for line in cost.lines],
        total=cost.total.to_wire(),
        captured=cost.total.to_wire(),
        released=(cap - cost.total).to_wire(),
    )
    agreed = AgreedSession("ses_1", Tariff.from_wire(wire), Money.parse("30.00", "usd"), "pi_123")

    verdict = verify_receipt(doc, header(), agreed)

    assert verdict.accepted, verdict.reasons


def _honest(energy_wh: int, price: Decimal, cap: StationMoney) -> dict[str, Any]:
    wire = tariff_doc(str(price))
    cost = session_cost(StationTariff.from_wire(wire), Usage(Decimal(energy_wh)), cap)
    return receipt_doc(
        energy_kwh=str((Decimal(energy_wh) / 1000).quantize(Decimal("0.001"))),
        meter_start_wh=1000,
        meter_stop_wh=1000 + energy_wh,
        tariff=wire,
        cost_lines=[line.to_wire() for line in cost.lines],
        total=cost.total.to_wire(),
        captured=cost.total.to_wire(),
        released=(cap - cost.total).to_wire(),
    )


def _cent(text: str, step: int) -> str:
    return str(Decimal(text) + Decimal(step) / 100)


@settings(max_examples=300, deadline=None)
@given(
    energy_wh=st.integers(min_value=1, max_value=100_000),
    price=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1.5"), places=4),
    field=st.sampled_from(["total", "captured", "released", "meter", "energy_line", "fee_line"]),
    step=st.sampled_from([-1, 1]),
)
def test_any_one_cent_or_one_wh_off_is_disputed(
    energy_wh: int, price: Decimal, field: str, step: int
) -> None:
    doc = _honest(energy_wh, price, StationMoney.parse("40.00", "usd"))
    cap = Money.parse("40.00", "usd")
    agreed = AgreedSession("ses_1", Tariff.from_wire(doc["tariff"]), cap, "pi_123")
    assert verify_receipt(doc, header(), agreed).accepted
    if field == "meter":
        doc["meter_stop_wh"] += step
    elif field.endswith("_line"):
        kind = "energy" if field == "energy_line" else "session_fee"
        for line in doc["cost_lines"]:
            if line["kind"] == kind:
                line["amount"] = _cent(line["amount"], step)
    else:
        doc[field] = _cent(doc[field], step)

    verdict = verify_receipt(doc, header(), agreed)

    assert not verdict.accepted, (field, step, doc)
