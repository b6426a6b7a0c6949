import base64
import json
from decimal import Decimal
from typing import Any

import pytest
import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from hypothesis import given, settings
from hypothesis import strategies as st

from factories import receipt_doc, tariff_doc
from vehicle.money import Money
from vehicle.receipt import SIGNATURE_OK, AgreedSession, verify_receipt
from vehicle.signing import public_key_b64
from vehicle.terms import Tariff

AGREED = AgreedSession(
    session_id="ses_1",
    tariff=Tariff.from_wire(tariff_doc()),
    cap=Money.parse("25.00", "usd"),
    payment_reference="pi_123",
)


def header(**over: Any) -> str:
    doc = {"status": "success", "method": "stripe", "timestamp": "2026-11-22T12:00:00Z",
           "reference": "pi_123"} | over  # fmt: skip
    return base64.urlsafe_b64encode(json.dumps(doc).encode()).decode().rstrip("=")


def lines(energy: str, energy_amount: str, fee: str = "0.50") -> list[dict[str, str]]:
    return [
        {"kind": "energy", "quantity": energy, "unit_price": "0.4500", "amount": energy_amount},
        {"kind": "session_fee", "quantity": "1", "unit_price": "0.50", "amount": fee},
    ]


def test_a_receipt_that_adds_up_is_accepted() -> None:
    verdict = verify_receipt(receipt_doc(), header(), AGREED)

    assert verdict.accepted, verdict.reasons
    assert verdict.notes  # the station's signature is not checked: a recorded gap


def test_a_capped_session_shows_the_cap_line_and_captures_the_cap() -> None:
    doc = receipt_doc(
        energy_kwh="60.000", meter_start_wh=0, meter_stop_wh=60000,
        cost_lines=[*lines("60.000", "27.00"),
                    {"kind": "cap", "quantity": "1", "unit_price": "-2.50", "amount": "-2.50"}],
        total="25.00", captured="25.00", released="0.00",
    )  # fmt: skip

    assert verify_receipt(doc, header(), AGREED).accepted


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"total": "14.55"}, "total"),
        ({"captured": "25.01", "released": "-0.01"}, "exceeds the cap"),
        ({"released": "10.00"}, "released"),
        ({"meter_stop_wh": 32500}, "meters"),
        ({"currency": "eur"}, "receipt in eur"),
        ({"session_id": "ses_2"}, "ses_2"),
        (
            {
                "cost_lines": lines("31.204", "15.04"),
                "total": "15.54",
                "captured": "15.54",
                "released": "9.46",
            },
            "energy line",
        ),
        (
            {
                "cost_lines": lines("30.000", "13.50"),
                "total": "14.00",
                "captured": "14.00",
                "released": "11.00",
            },
            "bills 30.000 kWh",
        ),
        ({"tariff": tariff_doc("0.5000")}, "tariff differs"),
        (
            {
                "cost_lines": lines("31.204", "14.04", fee="0.60"),
                "total": "14.64",
                "captured": "14.64",
                "released": "10.36",
            },
            "session_fee",
        ),
        (
            {
                "cost_lines": [
                    *lines("31.204", "14.04"),
                    {"kind": "tip", "quantity": "1", "unit_price": "1", "amount": "1.00"},
                ],
                "total": "15.54",
                "captured": "15.54",
                "released": "9.46",
            },
            "unknown",
        ),
        ({"meter_stop_wh": "32404"}, "malformed"),
    ],
)
def test_a_receipt_that_does_not_add_up_is_disputed(change: dict[str, Any], reason: str) -> None:
    verdict = verify_receipt(receipt_doc(**change), header(), AGREED)

    assert not verdict.accepted
    assert verdict.kind == "dispute"
    assert any(reason in r for r in verdict.reasons), verdict.reasons


def test_a_receipt_for_another_payment_is_disputed() -> None:
    verdict = verify_receipt(receipt_doc(), header(reference="pi_999"), AGREED)

    assert any("pi_999" in r for r in verdict.reasons)


def test_a_receipt_without_a_payment_receipt_header_is_disputed() -> None:
    assert not verify_receipt(receipt_doc(), None, AGREED).accepted
    assert not verify_receipt(receipt_doc(), "garbage!", AGREED).accepted


@settings(max_examples=300, deadline=None)
@given(
    energy_wh=st.integers(min_value=0, max_value=200_000),
    price=st.decimals(min_value=Decimal("0.01"), max_value=Decimal("1.5"), places=4),
)
def test_an_honest_receipt_is_always_accepted(energy_wh: int, price: Decimal) -> None:
    cap = Decimal("60.00")
    tariff = tariff_doc(str(price))
    kwh = (Decimal(energy_wh) / 1000).quantize(Decimal("0.001"))
    energy_exact = kwh * price
    uncapped = (energy_exact + Decimal("0.50")).quantize(Decimal("0.01"), "ROUND_HALF_UP")
    energy_amount = uncapped - Decimal("0.50")
    cost_lines = lines(str(kwh), str(energy_amount))
    for line in cost_lines:
        line["unit_price"] = line["unit_price"] if line["kind"] != "energy" else str(price)
    total = min(uncapped, cap)
    if uncapped > cap:
        cost_lines.append({"kind": "cap", "quantity": "1", "unit_price": str(cap - uncapped),
                           "amount": str(cap - uncapped)})  # fmt: skip
    doc = receipt_doc(
        energy_kwh=str(kwh), meter_start_wh=500, meter_stop_wh=500 + energy_wh, tariff=tariff,
        cost_lines=cost_lines, total=str(total), captured=str(total), released=str(cap - total),
    )  # fmt: skip
    agreed = AgreedSession("ses_1", Tariff.from_wire(tariff), Money(cap, "usd"), "pi_123")

    verdict = verify_receipt(doc, header(), agreed)

    assert verdict.accepted, verdict.reasons


def signed(doc: dict[str, Any], key: Ed25519PrivateKey) -> dict[str, Any]:
    """The station's signature: Ed25519 over the RFC 8785 body without `signature`."""
    unsigned = {k: v for k, v in doc.items() if k != "signature"}
    signature = key.sign(rfc8785.dumps(unsigned))
    return unsigned | {"signature": base64.urlsafe_b64encode(signature).decode().rstrip("=")}


def test_a_receipt_signed_with_the_station_key_verifies() -> None:
    key = Ed25519PrivateKey.generate()

    verdict = verify_receipt(signed(receipt_doc(), key), header(), AGREED, public_key_b64(key))

    assert verdict.accepted, verdict.reasons
    assert verdict.notes == (SIGNATURE_OK,)


def test_a_receipt_altered_after_signing_is_disputed() -> None:
    key = Ed25519PrivateKey.generate()
    doc = signed(receipt_doc(), key) | {"released": "10.45", "captured": "14.55", "total": "14.55"}

    verdict = verify_receipt(doc, header(), AGREED, public_key_b64(key))

    assert any("signature" in r for r in verdict.reasons)


def test_a_receipt_signed_by_another_key_is_disputed() -> None:
    doc = signed(receipt_doc(), Ed25519PrivateKey.generate())

    verdict = verify_receipt(doc, header(), AGREED, public_key_b64(Ed25519PrivateKey.generate()))

    assert any("signature" in r for r in verdict.reasons)


def capture_header(**over: Any) -> str:
    """A capture receipt as draft-stripe-authorize-00 spells it (14.54 captured)."""
    fields = {"intent": "authorize", "capturedAmount": "1454", "delta": "1454",
              "externalId": "off_1"} | over  # fmt: skip
    return header(**fields)


AGREED_OFFER = AgreedSession("ses_1", AGREED.tariff, AGREED.cap, "pi_123", offer_id="off_1")


def test_a_capture_receipt_that_matches_the_body_and_the_challenge_is_accepted() -> None:
    verdict = verify_receipt(receipt_doc(), capture_header(), AGREED_OFFER)

    assert verdict.accepted, verdict.reasons
    assert verdict.header is not None and verdict.header.external_id == "off_1"


@pytest.mark.parametrize(
    ("over", "reason"),
    [
        ({"capturedAmount": "1455"}, "capturedAmount"),
        ({"delta": "1453"}, "delta"),
        ({"externalId": "ses_1"}, "externalId"),
        ({"intent": "charge"}, "intent"),
    ],
)
def test_a_capture_receipt_that_disagrees_is_disputed(over: dict[str, str], reason: str) -> None:
    verdict = verify_receipt(receipt_doc(), capture_header(**over), AGREED_OFFER)

    assert any(reason in r for r in verdict.reasons), verdict.reasons
