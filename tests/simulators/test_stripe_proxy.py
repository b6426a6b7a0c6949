"""The Stripe proxy enforces Stripe's idempotency rule in front of localstripe."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import stripe

from simulators.stripe_proxy import Fault, StripeProxy, operation_of
from simulators.stripe_sandbox import SANDBOX_API_KEY

HOLD = {
    "amount": 500,
    "currency": "usd",
    "capture_method": "manual",
    "confirm": True,
    "payment_method": "pm_card_visa",
    "metadata": {"session_id": "ses_1"},
}


@pytest.fixture
async def proxy(stripe_url: str) -> AsyncIterator[StripeProxy]:
    async with StripeProxy(stripe_url).running() as running:
        yield running


def client_of(proxy: StripeProxy) -> stripe.StripeClient:
    return stripe.StripeClient(
        SANDBOX_API_KEY, base_addresses={"api": proxy.url}, max_network_retries=0
    )


async def test_the_same_key_and_parameters_get_the_stored_answer(proxy: StripeProxy) -> None:
    client = client_of(proxy)

    first = await client.v1.payment_intents.create_async(HOLD, {"idempotency_key": "k1"})  # type: ignore[arg-type]
    again = await client.v1.payment_intents.create_async(HOLD, {"idempotency_key": "k1"})  # type: ignore[arg-type]

    assert first.id == again.id
    assert proxy.replayed == 1


async def test_the_same_key_with_other_parameters_is_an_idempotency_error(
    proxy: StripeProxy,
) -> None:
    client = client_of(proxy)
    await client.v1.payment_intents.create_async(HOLD, {"idempotency_key": "k2"})  # type: ignore[arg-type]
    other = {**HOLD, "metadata": {"session_id": "ses_1", "offer_id": "off_1"}}

    with pytest.raises(stripe.IdempotencyError):
        await client.v1.payment_intents.create_async(other, {"idempotency_key": "k2"})  # type: ignore[arg-type]

    assert proxy.idempotency_errors == 1


async def test_forward_then_drop_does_it_in_stripe_and_loses_the_answer(
    proxy: StripeProxy, stripe_url: str
) -> None:
    client = client_of(proxy)
    proxy.fault(Fault.FORWARD_THEN_DROP, operation="authorize")
    marked = {**HOLD, "metadata": {"session_id": "ses_dropped"}}

    with pytest.raises(stripe.APIConnectionError):
        await client.v1.payment_intents.create_async(marked, {"idempotency_key": "k3"})  # type: ignore[arg-type]
    direct = stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": stripe_url})
    made = [
        i
        for i in direct.v1.payment_intents.list({"limit": 100}).auto_paging_iter()
        if i.to_dict()["metadata"].get("session_id") == "ses_dropped"
    ]

    assert [i.status for i in made] == ["requires_capture"]


async def test_an_injected_500_does_nothing_in_stripe(proxy: StripeProxy) -> None:
    client = client_of(proxy)
    proxy.fault(Fault.ERROR_500, operation="authorize")

    with pytest.raises(stripe.APIError):
        await client.v1.payment_intents.create_async(HOLD, {"idempotency_key": "k4"})  # type: ignore[arg-type]
    after = await client.v1.payment_intents.create_async(HOLD, {"idempotency_key": "k4"})  # type: ignore[arg-type]

    assert after.status == "requires_capture"
    assert proxy.replayed == 0


def test_operations_are_named_by_method_and_path() -> None:
    assert operation_of("POST", "/v1/payment_intents") == "authorize"
    assert operation_of("POST", "/v1/payment_intents/pi_1/capture") == "capture"
    assert operation_of("POST", "/v1/payment_intents/pi_1/cancel") == "cancel"
    assert operation_of("GET", "/v1/payment_intents/pi_1") == "retrieve"
    assert operation_of("GET", "/v1/payment_intents?limit=100") == "list"
    assert operation_of("GET", "/v1/customers") == "other"
