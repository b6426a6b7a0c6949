"""The 402 and its refusals as the MPP drafts spell them (draft-stripe-authorize-00,
draft-payment-intent-authorize-00, the core draft-httpauth-payment-00): the
challenge's `methodDetails`, the problem `type`s from paymentauth.org beside
chargepay's stable `code`."""

from __future__ import annotations

from typing import Any

import httpx
import mpp

from tests.api import test_negotiations_api as base
from tests.api.test_negotiations_api import Api, open_negotiation
from vehicle.payer import parse_challenge

api = base.api  # the same running station, agents and charge point

PAYMENTAUTH = "https://paymentauth.org/problems/"


async def _challenge(api: Api) -> tuple[dict[str, Any], httpx.Response]:
    neg = (await open_negotiation(api.agent)).json()
    response = await api.agent.post(
        f"/v1/negotiations/{neg['negotiation_id']}/accept",
        json={"offer_id": neg["offer"]["offer_id"], "cap": "25.00"},
    )
    return neg, response


async def _pay(api: Api, neg: dict[str, Any], authorization: str) -> httpx.Response:
    return await api.agent.post(
        f"/v1/negotiations/{neg['negotiation_id']}/accept",
        json={"offer_id": neg["offer"]["offer_id"], "cap": "25.00"},
        headers={"Authorization": authorization},
    )


async def test_the_challenge_request_is_the_drafts(api: Api) -> None:
    neg, response = await _challenge(api)

    challenge = parse_challenge(response.headers["www-authenticate"], ("authorize",))
    assert challenge.request == {
        "amount": "2500",
        "currency": "usd",
        "externalId": neg["offer"]["offer_id"],
        "methodDetails": {
            "networkId": api.station.settings.mpp_network_id,
            "paymentMethodTypes": ["card"],
        },
    }
    assert response.headers["cache-control"] == "no-store"
    problem = response.json()
    assert problem["type"] == PAYMENTAUTH + "payment-required"
    assert problem["code"] == "payment_required"


async def test_a_malformed_credential_is_a_malformed_credential_problem(api: Api) -> None:
    neg, _ = await _challenge(api)

    response = await _pay(api, neg, "Payment not-base64url-json")

    assert response.status_code == 402
    problem = response.json()
    assert (problem["type"], problem["code"]) == (
        PAYMENTAUTH + "malformed-credential",
        "invalid_credential",
    )
    assert response.headers["www-authenticate"].startswith("Payment ")  # a fresh challenge


async def test_a_credential_for_another_cap_is_a_verification_failure(api: Api) -> None:
    neg, response = await _challenge(api)
    challenge = parse_challenge(response.headers["www-authenticate"], ("authorize",))
    credential = mpp.Credential(
        challenge=challenge.to_echo(), payload={"spt": "spt_1", "externalId": "off_other"}
    ).to_authorization()

    refused = await _pay(api, neg, credential)

    problem = refused.json()
    assert (problem["type"], problem["code"]) == (
        PAYMENTAUTH + "verification-failed",
        "invalid_credential",
    )


async def test_a_challenge_not_issued_here_is_an_invalid_challenge(api: Api) -> None:
    neg, response = await _challenge(api)
    forged = response.headers["www-authenticate"].replace('realm="', 'realm="x', 1)
    challenge = parse_challenge(forged, ("authorize",))
    credential = mpp.Credential(
        challenge=challenge.to_echo(), payload={"payment_method": "pm_card_visa"}
    ).to_authorization()

    refused = await _pay(api, neg, credential)

    problem = refused.json()
    assert (problem["type"], problem["code"]) == (
        PAYMENTAUTH + "invalid-challenge",
        "invalid_credential",
    )
