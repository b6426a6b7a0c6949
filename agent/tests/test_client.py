from collections.abc import AsyncIterator

from factories import offer_doc
from vehicle.client import ServerEvent, SessionView, parse_sse
from vehicle.errors import (
    AgentSuspended,
    AmountExceeded,
    CapTooLow,
    Conflict,
    InvalidCredential,
    NegotiationClosed,
    PaymentDeclined,
    PaymentRefused,
    StationError,
    problem_error,
)
from vehicle.money import Money


async def lines(*items: str) -> AsyncIterator[str]:
    for item in items:
        yield item


async def test_server_sent_events_are_split_on_blank_lines_and_json_decoded() -> None:
    stream = lines(
        ": keep-alive", "", "event: meter", 'data: {"energy_kwh": "1.5"}', "",
        "event: status", "data: {\"status\":", 'data: "charging"}', "", "data: plain", "",
    )  # fmt: skip

    events = [event async for event in parse_sse(stream)]

    assert events == [
        ServerEvent("meter", {"energy_kwh": "1.5"}),
        ServerEvent("status", {"status": "charging"}),
        ServerEvent("message", "plain"),
    ]


def test_problem_codes_map_to_typed_errors() -> None:
    cases = {
        (402, "payment_declined"): PaymentDeclined,
        (402, "invalid_credential"): InvalidCredential,
        (402, "payment_required"): PaymentRefused,
        (403, "amount_exceeded"): AmountExceeded,
        (403, "agent_suspended"): AgentSuspended,
        (409, "negotiation_closed"): NegotiationClosed,
        (409, "something_new"): Conflict,
        (422, "cap_too_low"): CapTooLow,
        (418, None): StationError,
    }
    for (status, code), cls in cases.items():
        error = problem_error(status, {"code": code, "detail": "why"}, www_authenticate="Payment x")

        assert type(error) is cls, (status, code)
        assert error.http_status == status
    declined = problem_error(402, {"code": "payment_declined"}, www_authenticate="Payment id=1")
    assert isinstance(declined, PaymentDeclined) and declined.www_authenticate == "Payment id=1"


def test_a_session_parses_with_its_payment_reference() -> None:
    doc = {
        "session_id": "ses_1", "status": "authorized", "charge_point_id": "CP-1", "evse_id": 1,
        "tariff": offer_doc()["tariff"], "cap": "25.00", "currency": "usd",
        "energy_kwh": "0.000", "cost": "0.00", "captured": None,
        "payment": {"provider": "stripe", "reference": "pi_1", "status": "requires_capture"},
    }  # fmt: skip

    view = SessionView.from_wire(doc)

    assert view.cap == Money.parse("25.00", "usd")
    assert view.payment_reference == "pi_1" and not view.terminal
