from datetime import timedelta
from decimal import Decimal

import pytest

from factories import NOW, offer_doc, reply_doc
from vehicle.errors import ProtocolViolation
from vehicle.terms import NegotiationReply, NegotiationStatus, Offer


def test_an_offer_parses_into_decimal_money() -> None:
    offer = Offer.from_wire(offer_doc("0.4500"))

    assert offer.tariff.energy_price_per_kwh == Decimal("0.4500")
    assert offer.estimated_cost.amount == Decimal("14.00")
    assert offer.valid_until == NOW + timedelta(minutes=5)


def test_a_reply_can_counter_only_while_open_and_rounds_remain() -> None:
    assert NegotiationReply.from_wire(reply_doc(round_=5)).can_counter
    assert not NegotiationReply.from_wire(reply_doc(round_=6)).can_counter
    assert not NegotiationReply.from_wire(reply_doc(status="agreed")).can_counter


def test_a_rejection_needs_no_offer() -> None:
    reply = NegotiationReply.from_wire(reply_doc(status="rejected", detail="below floor"))

    assert reply.status is NegotiationStatus.REJECTED
    assert reply.detail == "below floor"


@pytest.mark.parametrize(
    "broken",
    [
        {"status": "maybe"},
        {"round": "1"},
        {"offer": {"offer_id": "off_1"}},
        {"offer": offer_doc(energy_price_per_kwh=0.45)},
        {"offer": offer_doc(currency="USD")},
        {"offer": offer_doc(estimated="1e3")},
    ],
)
def test_a_malformed_reply_is_a_protocol_violation(broken: dict) -> None:
    doc = reply_doc() | broken

    with pytest.raises(ProtocolViolation):
        NegotiationReply.from_wire(doc)
