"""Shared Payment Tokens end to end in the sandbox: the agent's issuer asks the SPT layer
for a token, the station's Stripe gateway places a hold with it, and localstripe holds the
token's payment method — with every bound of the token enforced."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from simulators.spt_sandbox import SptSandbox
from simulators.stripe_sandbox import SANDBOX_API_KEY
from station.errors import PaymentDeclined
from station.payments.stripe_gateway import StripeGateway
from station.services.gateway import PaymentSource
from vehicle.spt import StripeTokenIssuer, TokenRefused, TokenRequest


@pytest.fixture
async def sandbox(stripe_url: str) -> AsyncIterator[SptSandbox]:
    async with SptSandbox(stripe_url).running() as running:
        yield running


def issuer(sandbox: SptSandbox) -> StripeTokenIssuer:
    return StripeTokenIssuer(SANDBOX_API_KEY, "pm_card_visa", api_base=sandbox.url)


def scoped(amount: int = 2500, currency: str = "usd", minutes: int = 5) -> TokenRequest:
    return TokenRequest(amount, currency, datetime.now(UTC) + timedelta(minutes=minutes), "prof_1")


async def hold(sandbox: SptSandbox, token: str, amount: int = 2500, key: str = "hold_1") -> str:
    gateway = StripeGateway(api_key=SANDBOX_API_KEY, api_base=sandbox.url)
    state = await gateway.authorize(
        amount_minor=amount, currency="usd", source=PaymentSource("spt", token),
        idempotency_key=key, metadata={"session_id": "ses_spt"},
    )  # fmt: skip
    assert state.status == "requires_capture"
    return state.reference


async def test_a_token_places_a_hold_on_its_payment_method(sandbox: SptSandbox) -> None:
    token = await issuer(sandbox).issue(scoped())

    reference = await hold(sandbox, token)

    issued = sandbox.tokens[token]
    assert token.startswith("spt_") and issued.payment_method == "pm_card_visa"
    assert (issued.currency, issued.max_amount) == ("usd", 2500)
    assert issued.network_business_profile == "prof_1"
    assert issued.status(datetime.now(UTC).timestamp()) == "used"
    assert reference.startswith("pi_")


async def test_a_token_is_single_use_but_a_replayed_hold_is_the_same_hold(
    sandbox: SptSandbox,
) -> None:
    token = await issuer(sandbox).issue(scoped())
    first = await hold(sandbox, token, key="hold_a")

    again = await hold(sandbox, token, key="hold_a")  # the same request, retried

    assert again == first
    with pytest.raises(PaymentDeclined):
        await hold(sandbox, token, key="hold_b")


# The token requests are built in the test, not at collection: their expiry counts from
# now, and a suite running longer than it would find them expired.
@pytest.mark.parametrize(
    ("bounds", "amount"),
    [
        ({"amount": 2000}, 2500),  # above the ceiling
        ({"currency": "eur"}, 2500),  # another currency
    ],
)
async def test_a_hold_outside_the_tokens_bounds_is_declined(
    sandbox: SptSandbox, bounds: dict[str, Any], amount: int
) -> None:
    token = await issuer(sandbox).issue(scoped(**bounds))

    with pytest.raises(PaymentDeclined):
        await hold(sandbox, token, amount=amount)

    assert sandbox.tokens[token].used_by is None


async def test_an_expired_or_unknown_token_is_declined(sandbox: SptSandbox) -> None:
    token = await issuer(sandbox).issue(scoped(minutes=1))
    sandbox._now = lambda: (datetime.now(UTC) + timedelta(minutes=2)).timestamp()

    with pytest.raises(PaymentDeclined):
        await hold(sandbox, token)
    with pytest.raises(PaymentDeclined):
        await hold(sandbox, "spt_never_issued", key="hold_2")


async def test_the_issuer_refuses_a_token_already_expired(sandbox: SptSandbox) -> None:
    with pytest.raises(TokenRefused, match="expires_at"):
        await issuer(sandbox).issue(scoped(minutes=-1))
