"""The car's agent pays a standard stripe/charge MPP merchant — one built with pympp's
server side, run here in-process — with a Shared Payment Token from the sandbox, within
its wallet limits, echoing the challenge's `externalId` (pympp's server refuses a
credential that does not)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import stripe
import uvicorn
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mpp.methods.stripe import server as stripe_server
from mpp.server import Mpp, Request, Response

from simulators.spt_sandbox import SptSandbox
from simulators.stripe_sandbox import SANDBOX_API_KEY
from vehicle.agent import VehicleAgent
from vehicle.errors import ChallengeMismatch, SpendLimitExceeded
from vehicle.money import Money
from vehicle.spt import StripeTokenIssuer
from vehicle.wallet import Instrument, SpendLimits, Wallet

ORDER = "order-42"


@pytest.fixture
async def sandbox(stripe_url: str) -> AsyncIterator[SptSandbox]:
    async with SptSandbox(stripe_url).running() as running:
        yield running


@pytest.fixture
async def merchant(sandbox: SptSandbox) -> AsyncIterator[str]:
    """A pympp merchant: GET /coffee costs 1.50 usd, GET /espresso-machine 400.00."""
    payments = Mpp(
        methods=stripe_server.charge(
            network_id="profile_merchant_test",
            client=stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": sandbox.url}),
            currency="usd",
            external_id=ORDER,
        ),
        realm="merchant.test",
        secret_key="merchant-secret-0123456789abcdef0123",
    )
    prices = {"/coffee": "1.50", "/espresso-machine": "400.00"}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in scope["headers"]]
        url = f"http://merchant.test{scope['path']}"
        result = await payments.charge(amount=prices[scope["path"]])(
            Request(scope["method"], url, headers)
        )
        response: Response = (
            result.challenge
            if result.status != 200
            else result.with_receipt(Response.json({"served": scope["path"][1:]}))
        )
        await send(
            {
                "type": "http.response.start",
                "status": response.status,
                "headers": [(k.encode(), v.encode()) for k, v in response.headers.multi_items()],
            }
        )
        await send({"type": "http.response.body", "body": response.body or b""})

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    task = asyncio.create_task(server.serve())
    for _ in range(500):
        if server.started:
            break
        await asyncio.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def _agent(sandbox: SptSandbox, per_session: str = "20.00") -> VehicleAgent:
    wallet = Wallet(
        Instrument("pm_card_visa"),
        SpendLimits(Money.parse(per_session, "usd"), Money.parse("50.00", "usd")),
        issuer=StripeTokenIssuer(SANDBOX_API_KEY, "pm_card_visa", api_base=sandbox.url),
    )
    return VehicleAgent("agt_unused", Ed25519PrivateKey.generate(), wallet)


async def test_the_agent_pays_a_pympp_merchant_on_charge(
    merchant: str, sandbox: SptSandbox
) -> None:
    async with _agent(sandbox) as agent:
        paid = await agent.pay_merchant("GET", f"{merchant}/coffee")

    assert paid.response.status_code == 200, paid.response.text
    assert paid.response.json() == {"served": "coffee"}
    assert paid.amount == Money.parse("1.50", "usd")
    assert paid.receipt is not None and paid.receipt.reference.startswith("pi_")
    assert paid.receipt.external_id == ORDER
    assert agent.wallet.spent_today() == Money.parse("1.50", "usd")
    ((_, token),) = sandbox.tokens.items()
    assert token.used_by is not None and token.max_amount == 150
    assert token.network_business_profile == "profile_merchant_test"


async def test_a_merchant_asking_more_than_the_wallet_allows_is_not_paid(
    merchant: str, sandbox: SptSandbox
) -> None:
    async with _agent(sandbox) as agent:
        with pytest.raises(SpendLimitExceeded):
            await agent.pay_merchant("GET", f"{merchant}/espresso-machine")
        with pytest.raises(ChallengeMismatch, match="above"):
            await agent.pay_merchant(
                "GET", f"{merchant}/coffee", max_amount=Money(Decimal("1.00"), "usd")
            )

    assert sandbox.tokens == {}  # no token was even issued
    assert agent.wallet.spent_today() == Money.parse("0.00", "usd")
