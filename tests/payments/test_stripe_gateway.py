"""The Stripe gateway against localstripe, through the real stripe SDK."""

from __future__ import annotations

import socket

import pytest
import stripe
from aiohttp import web

from simulators.stripe_sandbox import SANDBOX_API_KEY
from station.errors import PaymentDeclined, PaymentUnavailable
from station.payments.stripe_gateway import StripeGateway
from station.services.gateway import PaymentSource

VISA = PaymentSource("payment_method", "pm_card_visa")


@pytest.fixture
def gateway(stripe_url: str) -> StripeGateway:
    return StripeGateway(api_key=SANDBOX_API_KEY, api_base=stripe_url, timeout_s=5)


async def hold(gateway: StripeGateway, amount: int = 2500) -> str:
    state = await gateway.authorize(
        amount_minor=amount, currency="usd", source=VISA, idempotency_key="k", metadata={}
    )
    assert state.status == "requires_capture" and state.amount_minor == amount
    return state.reference


async def test_a_hold_is_captured_partially_once(gateway: StripeGateway) -> None:
    reference = await hold(gateway)

    captured = await gateway.capture(reference, 1234, idempotency_key="c")
    retrieved = await gateway.retrieve(reference)

    assert (captured.status, captured.captured_minor) == ("succeeded", 1234)
    assert (retrieved.status, retrieved.captured_minor) == ("succeeded", 1234)
    with pytest.raises(PaymentUnavailable):
        await gateway.capture(reference, 1234, idempotency_key="c2")
    assert gateway.calls == {"authorize": 1, "capture": 2, "retrieve": 1}


async def test_capturing_above_the_hold_is_refused(gateway: StripeGateway) -> None:
    reference = await hold(gateway, 500)

    with pytest.raises(PaymentUnavailable):
        await gateway.capture(reference, 501, idempotency_key="c")

    assert (await gateway.retrieve(reference)).status == "requires_capture"


async def test_a_cancelled_hold_is_released(gateway: StripeGateway) -> None:
    reference = await hold(gateway)

    cancelled = await gateway.cancel(reference, idempotency_key="x")

    assert cancelled.status == "canceled" and cancelled.captured_minor == 0


async def test_a_declined_card_is_payment_declined(gateway: StripeGateway, stripe_url: str) -> None:
    client = stripe.StripeClient(api_key=SANDBOX_API_KEY, base_addresses={"api": stripe_url})
    card = {"number": "4000000000000341", "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    declined = client.v1.payment_methods.create({"type": "card", "card": card})

    with pytest.raises(PaymentDeclined):
        await gateway.authorize(
            amount_minor=100,
            currency="usd",
            source=PaymentSource("payment_method", declined.id),
            idempotency_key="k",
            metadata={},
        )


async def test_an_unknown_payment_method_is_payment_declined(gateway: StripeGateway) -> None:
    with pytest.raises(PaymentDeclined):
        await gateway.authorize(
            amount_minor=100,
            currency="usd",
            source=PaymentSource("payment_method", "pm_nonexistent"),
            idempotency_key="k",
            metadata={},
        )


async def test_an_unreachable_stripe_is_payment_unavailable() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    gateway = StripeGateway(
        api_key=SANDBOX_API_KEY, api_base=f"http://127.0.0.1:{port}", timeout_s=2
    )

    with pytest.raises(PaymentUnavailable):
        await gateway.retrieve("pi_missing")


async def test_a_shared_payment_token_goes_to_stripe_as_a_granted_token() -> None:
    """localstripe knows no SPTs: a minimal Stripe-shaped server records what the SDK sends."""
    seen: list[tuple[dict[str, str], dict[str, str]]] = []

    async def create(request: web.Request) -> web.Response:
        seen.append((dict(await request.post()), dict(request.headers)))  # type: ignore[arg-type]
        intent = {"id": "pi_spt", "object": "payment_intent", "status": "requires_capture",
                  "amount": 700, "currency": "usd"}  # fmt: skip
        return web.json_response(intent)

    app = web.Application()
    app.router.add_post("/v1/payment_intents", create)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        gateway = StripeGateway(api_key=SANDBOX_API_KEY, api_base=f"http://127.0.0.1:{port}")
        state = await gateway.authorize(
            amount_minor=700,
            currency="usd",
            source=PaymentSource("spt", "spt_abc"),
            idempotency_key="hold_ch1",
            metadata={"session_id": "ses_1"},
        )
    finally:
        await runner.cleanup()

    ((form, headers),) = seen
    assert state.reference == "pi_spt" and state.status == "requires_capture"
    assert form["shared_payment_granted_token"] == "spt_abc" and "payment_method" not in form
    assert (form["capture_method"], form["confirm"], form["amount"]) == ("manual", "true", "700")
    assert headers["Idempotency-Key"] == "hold_ch1"
    assert headers["Stripe-Version"].endswith(".preview")


async def test_a_hold_is_found_by_its_session_id_across_list_pages(
    gateway: StripeGateway,
) -> None:
    for n in range(3):  # others' intents first, so the match is past the first page
        await gateway.authorize(
            amount_minor=100 + n, currency="usd", source=VISA,
            idempotency_key=f"o{n}", metadata={"session_id": f"ses_other{n}"},
        )  # fmt: skip
    made = await gateway.authorize(
        amount_minor=700, currency="usd", source=VISA,
        idempotency_key="f", metadata={"session_id": "ses_find_me"},
    )  # fmt: skip

    gateway.list_page_size = 2
    found = await gateway.find_hold("ses_find_me")
    missing = await gateway.find_hold("ses_never_made")

    assert found == made
    assert missing is None
    assert gateway.calls["list"] >= 2
