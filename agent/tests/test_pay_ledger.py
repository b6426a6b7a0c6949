"""The spend record around one payment (`VehicleAgent.pay`), against a scripted station.

A payment is counted as spent only once the station answers 201 (the hold is
placed); any other answer releases it; no answer at all keeps it counted until
the challenge expires, the last moment a hold could have been placed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mpp import Challenge

from factories import offer_doc, tariff_doc
from vehicle.agent import Deal, VehicleAgent
from vehicle.client import StationTarget
from vehicle.errors import NoAnswer, PaymentDeclined, StationUnavailable
from vehicle.money import Money
from vehicle.signing import AgentSigner
from vehicle.strategy import Accept
from vehicle.terms import Offer
from vehicle.wallet import Instrument, JsonFileLedger, SpendLimits, Wallet

BASE = "http://station.test"
CAP = Money.parse("22.00", "usd")


def usd(text: str) -> Money:
    return Money.parse(text, "usd")


class Clock:
    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now


def challenge_header(expires: datetime) -> str:
    issued = Challenge.create(
        secret_key="station-secret",
        realm="station.test",
        method="stripe",
        intent="authorize",
        request={"amount": "2200", "currency": "usd", "externalId": "off_1"},
        expires=expires.isoformat().replace("+00:00", "Z"),
    )
    return issued.to_www_authenticate("station.test")


def session_doc() -> dict[str, object]:
    return {
        "session_id": "ses_1", "status": "authorized", "charge_point_id": "CP-1",
        "tariff": tariff_doc(), "cap": "22.00", "currency": "usd", "energy_kwh": "0.000",
        "cost": "0.00", "captured": None,
        "payment": {"provider": "stripe", "reference": "pi_1", "status": "requires_capture"},
    }  # fmt: skip


def problem(status: int, code: str) -> httpx.Response:
    return httpx.Response(
        status,
        json={"type": "about:blank", "title": code, "status": status, "code": code},
        headers={"Content-Type": "application/problem+json"},
    )


Paid = Callable[[httpx.Request], httpx.Response]


def station(clock: Clock, paid: Paid) -> httpx.MockTransport:
    def handle(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/negotiations/neg_1/accept"
        if not request.headers.get("Authorization", "").startswith("Payment "):
            return httpx.Response(
                402,
                json={"type": "about:blank", "status": 402, "code": "payment_required"},
                headers={"WWW-Authenticate": challenge_header(clock() + timedelta(minutes=5))},
            )
        return paid(request)

    return httpx.MockTransport(handle)


def deal() -> Deal:
    offer = Offer.from_wire(offer_doc())
    return Deal(StationTarget(BASE, "CP-1"), "neg_1", Accept(offer, usd("14.00"), CAP), 1)


async def pay(wallet: Wallet, clock: Clock, paid: Paid) -> None:
    agent = VehicleAgent("agt_1", Ed25519PrivateKey.generate(), wallet, clock=clock)
    agent.http = httpx.AsyncClient(transport=station(clock, paid), auth=agent.signer("agt_1"))
    async with agent:
        await agent.pay(deal())


def make_wallet(clock: Clock, tmp_path: Path) -> Wallet:
    ledger = JsonFileLedger(tmp_path / "spend.json")
    return Wallet(
        Instrument("pm_card_visa"), SpendLimits(usd("40.00"), usd("60.00")), ledger, clock
    )


async def test_a_placed_hold_is_counted_once_the_station_answers_201(tmp_path: Path) -> None:
    clock = Clock()
    wallet = make_wallet(clock, tmp_path)
    seen: list[Money] = []

    def paid(_request: httpx.Request) -> httpx.Response:
        seen.append(wallet.spent_today())  # in flight: reserved, so a second agent waits
        return httpx.Response(201, json=session_doc())

    await pay(wallet, clock, paid)

    assert seen == [CAP]
    assert wallet.spent_today() == CAP
    doc = json.loads((tmp_path / "spend.json").read_text())
    assert doc["off_1"]["state"] == "placed" and "until" not in doc["off_1"]
    clock.now += timedelta(hours=1)  # a placed hold does not lapse
    assert wallet.spent_today() == CAP


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (lambda: problem(503, "station_unavailable"), StationUnavailable),
        (lambda: problem(402, "payment_declined"), PaymentDeclined),
    ],
)
async def test_a_payment_the_station_answers_with_an_error_is_not_counted(
    tmp_path: Path, answer: Callable[[], httpx.Response], error: type[Exception]
) -> None:
    clock = Clock()
    wallet = make_wallet(clock, tmp_path)

    with pytest.raises(error):
        await pay(wallet, clock, lambda _request: answer())

    assert wallet.spent_today() == Money.zero("usd")
    assert json.loads((tmp_path / "spend.json").read_text()) == {}
    assert wallet.allowance() == usd("40.00")  # the next run is not refused for it


async def test_a_payment_with_no_answer_counts_until_its_challenge_expires(
    tmp_path: Path,
) -> None:
    clock = Clock()
    wallet = make_wallet(clock, tmp_path)

    def lost(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("no answer", request=request)

    with pytest.raises(NoAnswer):
        await pay(wallet, clock, lost)

    assert wallet.spent_today() == CAP  # the hold may exist
    clock.now += timedelta(minutes=4)
    assert wallet.spent_today() == CAP
    clock.now += timedelta(minutes=1, seconds=16)  # past the expiry and one request timeout
    assert wallet.spent_today() == Money.zero("usd")


def test_settling_releases_the_rest_of_the_hold(tmp_path: Path) -> None:
    clock = Clock()
    wallet = make_wallet(clock, tmp_path)
    wallet.reserve("off_1", CAP, clock() + timedelta(minutes=5))
    wallet.placed("off_1")

    wallet.settle("off_1", Money(Decimal("9.87"), "usd"))

    assert wallet.spent_today() == usd("9.87")
    assert json.loads((tmp_path / "spend.json").read_text())["off_1"]["state"] == "settled"
    wallet.settle("off_1", Money.zero("usd"))
    assert wallet.spent_today() == Money.zero("usd")


def _nonce(request: httpx.Request) -> str:
    inputs = request.headers["signature-input"]
    return inputs.split('nonce="', 1)[1].split('"', 1)[0]


async def test_the_paid_retry_of_the_accept_is_signed_afresh(tmp_path: Path) -> None:
    """The credential goes out on a new request with a new RFC 9421 nonce: a station that
    refuses replayed nonces takes it (pympp's retry copied the first request's headers)."""
    clock = Clock()
    wallet = make_wallet(clock, tmp_path)
    seen: list[httpx.Request] = []

    def paid(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(201, json=session_doc())

    agent = VehicleAgent("agt_1", Ed25519PrivateKey.generate(), wallet, clock=clock)
    transport = station(clock, paid)

    async def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return transport.handle_request(request)

    agent.http = httpx.AsyncClient(
        transport=httpx.MockTransport(record), auth=agent.signer("agt_1")
    )
    async with agent:
        await agent.pay(deal())

    unpaid, retried = seen[0], seen[-1]
    assert "authorization" not in unpaid.headers and "authorization" in retried.headers
    assert _nonce(unpaid) != _nonce(retried)


def test_a_request_resent_with_its_old_headers_is_signed_with_a_fresh_nonce() -> None:
    signer = AgentSigner("agt_1", Ed25519PrivateKey.generate())
    first = signer.sign(httpx.Request("POST", f"{BASE}/v1/x", content=b"{}"))

    again = signer.sign(httpx.Request("POST", f"{BASE}/v1/x", content=b"{}", headers=first.headers))

    assert again.headers["signature-input"].count("nonce=") == 1
    assert _nonce(again) != _nonce(first)


async def test_with_an_issuer_each_payment_uses_a_token_scoped_to_its_challenge(
    tmp_path: Path,
) -> None:
    from mpp import Credential

    from vehicle.spt import TokenRequest

    clock = Clock()
    asked: list[TokenRequest] = []

    class Issuer:
        async def issue(self, request: TokenRequest) -> str:
            asked.append(request)
            return "spt_for_this_challenge"

    wallet = make_wallet(clock, tmp_path)
    wallet.issuer = Issuer()
    payloads: list[object] = []

    def paid(request: httpx.Request) -> httpx.Response:
        payloads.append(Credential.from_authorization(request.headers["authorization"]).payload)
        return httpx.Response(201, json=session_doc())

    await pay(wallet, clock, paid)

    (token_request,) = asked
    assert (token_request.amount_minor, token_request.currency) == (2200, "usd")
    assert token_request.expires_at > clock.now
    assert payloads == [{"spt": "spt_for_this_challenge", "externalId": "off_1"}]
