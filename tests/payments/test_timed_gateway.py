"""`TimedGateway` counts and times every call of the real Stripe gateway (localstripe)."""

from __future__ import annotations

import inspect

import pytest

from simulators.stripe_sandbox import SANDBOX_API_KEY
from station.errors import PaymentDeclined
from station.metrics import StationMetrics
from station.payments.stripe_gateway import StripeGateway
from station.payments.timed_gateway import TimedGateway
from station.services.gateway import PaymentGateway, PaymentSource

VISA = PaymentSource("payment_method", "pm_card_visa")


@pytest.fixture
def metrics() -> StationMetrics:
    return StationMetrics()


@pytest.fixture
def gateway(stripe_url: str, metrics: StationMetrics) -> TimedGateway:
    stripe = StripeGateway(api_key=SANDBOX_API_KEY, api_base=stripe_url, timeout_s=5)
    return TimedGateway(stripe, metrics)


def latency(metrics: StationMetrics, operation: str, sample: str) -> float | None:
    return metrics.registry.get_sample_value(
        f"chargepay_stripe_request_seconds_{sample}", {"operation": operation}
    )


async def test_each_call_is_counted_and_its_latency_observed(
    gateway: TimedGateway, metrics: StationMetrics
) -> None:
    held = await gateway.authorize(
        amount_minor=2500, currency="usd", source=VISA, idempotency_key="k", metadata={}
    )
    captured = await gateway.capture(held.reference, 1234, idempotency_key="c")
    looked = await gateway.retrieve(held.reference)

    assert (held.status, captured.status, looked.captured_minor) == (
        "requires_capture",
        "succeeded",
        1234,
    )
    assert gateway.calls == {"authorize": 1, "capture": 1, "retrieve": 1}
    for operation in ("authorize", "capture", "retrieve"):
        assert latency(metrics, operation, "count") == 1
        observed = latency(metrics, operation, "sum")
        assert observed is not None and 0 < observed < 5
    assert latency(metrics, "cancel", "count") is None


async def test_a_failed_call_is_counted_by_its_error_and_raised_as_it_was(
    gateway: TimedGateway, metrics: StationMetrics
) -> None:
    with pytest.raises(PaymentDeclined):
        await gateway.authorize(
            amount_minor=100,
            currency="usd",
            source=PaymentSource("payment_method", "pm_nonexistent"),
            idempotency_key="k",
            metadata={},
        )

    errors = metrics.registry.get_sample_value(
        "chargepay_stripe_errors_total", {"operation": "authorize", "error": "payment_declined"}
    )
    assert errors == 1
    assert latency(metrics, "authorize", "count") == 1
    assert gateway.calls == {"authorize": 1}


def test_it_implements_every_operation_of_the_gateway_port_with_its_signature() -> None:
    port = {
        name: inspect.signature(member)
        for name, member in vars(PaymentGateway).items()
        if inspect.iscoroutinefunction(member)
    }

    timed = {name: inspect.signature(getattr(TimedGateway, name)) for name in port}

    assert len(port) == 8
    assert timed == port
