"""Unregistered payers (CHARGEPAY_OPEN_PAYERS, off by default): a standard MPP client
with no agent key negotiates and pays, the payment being its authentication, under the
operator's ceilings per session and per payment method per day, and the operator can
block one payment method. Registered agents keep their identity and limits."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import mpp
import pytest
import stripe

from simulators.spt_sandbox import SptSandbox
from tests.e2e.conftest import World, battery
from vehicle.payer import parse_challenge

CEILINGS = {
    "open_payers": True,
    "open_payer_limit_per_session": "10",
    "open_payer_limit_per_method_per_day": "12",
}


@pytest.fixture
async def sandbox(stripe_url: str) -> AsyncIterator[SptSandbox]:
    async with SptSandbox(stripe_url).running() as running:
        yield running


@pytest.fixture
async def open_world(make_world: Any, sandbox: SptSandbox) -> AsyncIterator[World]:
    async with make_world(stripe_api_base=sandbox.url, **CEILINGS) as world:
        yield world


async def _pay(
    unsigned: httpx.AsyncClient, cp_id: str, cap: str, payload: dict[str, str]
) -> httpx.Response:
    """Negotiate and pay as an unregistered payer: no signature, only the payment."""
    opened = await unsigned.post(
        "/v1/negotiations", json={"charge_point_id": cp_id, "energy_kwh": "5"}
    )
    assert opened.status_code == 201, opened.text
    neg = opened.json()
    path = f"/v1/negotiations/{neg['negotiation_id']}/accept"
    body = {"offer_id": neg["offer"]["offer_id"], "cap": cap}
    refused = await unsigned.post(path, json=body)
    if refused.status_code != 402:
        return refused
    challenge = parse_challenge(refused.headers["www-authenticate"], ("charge",))
    payload = {**payload, "externalId": neg["offer"]["offer_id"]}
    credential = mpp.Credential(challenge.to_echo(), payload).to_authorization()
    return await unsigned.post(path, json=body, headers={"Authorization": credential})


async def _spt(sandbox: SptSandbox, payment_method: str) -> dict[str, str]:
    token = sandbox.issue(
        payment_method, currency="usd", max_amount=10_000,
        expires_at=int(time.time()) + 600,
        network_business_profile="profile_chargepay_sandbox",
    )  # fmt: skip
    return {"spt": token.token_id}


async def test_unsigned_requests_are_refused_unless_the_operator_opens_payment(
    world: World,
) -> None:
    async with httpx.AsyncClient(base_url=world.http) as unsigned:
        response = await unsigned.post(
            "/v1/negotiations", json={"charge_point_id": "CP-X", "energy_kwh": "5"}
        )
    assert (response.status_code, response.json()["code"]) == (401, "unauthenticated")


async def test_an_unregistered_payer_pays_within_the_ceilings(
    open_world: World, sandbox: SptSandbox, stripe_client: stripe.StripeClient
) -> None:
    world = open_world
    other = stripe_client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "5555555555554444", "exp_month": 12, "exp_year": 2034, "cvc": "123"},
        }
    ).id
    cp, cp2 = await world.charge_point("ocpp2.0.1"), await world.charge_point("ocpp2.0.1")
    async with cp, cp2, httpx.AsyncClient(base_url=world.http, timeout=15) as unsigned:
        await asyncio.wait_for(cp.booted.wait(), 10)
        await asyncio.wait_for(cp2.booted.wait(), 10)
        cp.plug_in(1, battery("5"))
        cp2.plug_in(1, battery("5"))
        over_session = await _pay(
            unsigned, cp.charge_point_id, "11.00", {"payment_method": "pm_card_visa"}
        )
        first = await _pay(
            unsigned, cp.charge_point_id, "8.00", await _spt(sandbox, "pm_card_visa")
        )
        assert first.status_code == 201, first.text
        over_day = await _pay(
            unsigned, cp.charge_point_id, "5.00", await _spt(sandbox, "pm_card_visa")
        )
        blocked = await world.admin.post(
            "/v1/admin/payment-methods/block",
            json={"payment_method": f"payment_method:{other}", "reason": "stolen card"},
        )
        refused = await _pay(unsigned, cp.charge_point_id, "5.00", {"payment_method": other})
        # A registered agent is held to its own limits, not the open payers' ceilings.
        registered = await world.pay(await world.negotiate(cp2, "5"), "20.00")

    assert (over_session.status_code, over_session.json()["code"]) == (403, "amount_exceeded")
    assert first.json()["payment"]["intent"] == "charge"
    assert (over_day.status_code, over_day.json()["code"]) == (403, "amount_exceeded")
    assert over_day.json()["remaining"] == "4.00"  # 12 a day for this card; 8 charged
    assert blocked.status_code == 200, blocked.text
    assert (refused.status_code, refused.json()["code"]) == (403, "payment_method_blocked")
    assert registered.status_code == 201, registered.text
