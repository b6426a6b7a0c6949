"""Malformed payment credentials get 402 invalid_credential with a fresh challenge, the
same on every database (PROTOCOL: a malformed credential is 402 invalid_credential),
never a 5xx, and place no hold."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import mpp
import pytest
import stripe

from tests.e2e.conftest import World, battery


def b64(doc: Any) -> str:
    raw = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def with_payload(challenge: mpp.Challenge, payload: Any) -> str:
    return mpp.Credential(challenge=challenge.to_echo(), payload=payload).to_authorization()


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param({"payment_method": "pm_" + "a" * 300}, id="oversized-pm"),
        pytest.param({"spt": "spt_" + "b" * 300}, id="oversized-spt"),
        pytest.param({"payment_method": "pm_card\x00visa"}, id="nul-in-pm"),
    ],
)
async def test_an_oversized_or_nul_payment_source_is_402_invalid_credential(
    world: World, stripe_client: stripe.StripeClient, payload: dict[str, str]
) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        cp.plug_in(1, battery("5"))
        negotiation = await world.negotiate(cp, "5")
        challenge = await world.challenge(negotiation, "5.00")

        response = await world.accept(negotiation, "5.00", with_payload(challenge, payload))

    holds = [
        i
        for i in stripe_client.v1.payment_intents.list({"limit": 100}).data
        if i.to_dict()["metadata"].get("agent_id") == world.agent_id
        and i.to_dict()["status"] == "requires_capture"
    ]
    outcome = (response.status_code, response.json()["code"])
    assert outcome == (402, "invalid_credential"), response.text
    assert "www-authenticate" in response.headers
    assert holds == []


async def test_garbled_authorization_headers_are_402_invalid_credential(world: World) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        negotiation = await world.negotiate(cp, "5")
        challenge = await world.challenge(negotiation, "5.00")
        headers = [
            "Payment !!!",
            "Payment " + b64(b"not json"),
            "Payment " + b64([1, 2, 3]),
            "Payment " + b64({"challenge": 5, "payload": {}}),
            "Payment " + b64({"challenge": {}, "payload": {"payment_method": "pm_card_visa"}}),
            "Payment " + "A" * 7000,
            with_payload(challenge, None),
            with_payload(challenge, []),
            with_payload(challenge, {"payment_method": 5}),
            with_payload(challenge, {"payment_method": "pm_x", "spt": "spt_y"}),
            with_payload(challenge, {"payment_method": "card_visa"}),
        ]

        responses = [await world.accept(negotiation, "5.00", h) for h in headers]

    outcomes = [(r.status_code, r.json().get("code")) for r in responses]
    assert outcomes == [(402, "invalid_credential")] * len(headers)
