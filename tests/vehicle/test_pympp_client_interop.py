"""pympp's own client pays a live station on `authorize`, through a small client-side
method registered in it (the SDK ships only `charge`), with a Shared Payment Token issued
by the sandbox's SPT layer.

pympp retries the 402 below httpx's auth layer, copying the first request's headers: an
RFC 9421-signed request would go out again with the same nonce, and the station refuses a
nonce it has seen. `vehicle.signing.SigningTransport` under pympp's transport signs the
retry afresh."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import mpp
import pytest
from mpp.client.transport import PaymentTransport
from mpp.methods import Method
from mpp.methods.stripe.schemas import ChargeRequest, StripeCredentialPayload
from mpp.runtime import ClientMethod, CredentialParams

from simulators.battery import Battery
from simulators.spt_sandbox import SptSandbox
from simulators.stripe_sandbox import SANDBOX_API_KEY
from station.app import Station, running_station
from station.settings import Settings
from tests.vehicle import test_agent_e2e as e2e
from vehicle.signing import AgentSigner, SigningTransport
from vehicle.spt import StripeTokenIssuer, TokenRequest
from vehicle.terms import parse_time

world = e2e.world

# The draft's request has the same shape as pympp's stripe/charge request.
AUTHORIZE = Method(
    name="stripe",
    intent="authorize",
    request_model=ChargeRequest,
    payload_model=StripeCredentialPayload,
)


def authorize_method(issuer: StripeTokenIssuer) -> ClientMethod:
    """A client-side `stripe/authorize`: an SPT scoped to the challenge, `{spt, externalId}`."""

    async def create_credential(params: CredentialParams) -> str:
        challenge = params.challenge
        request: dict[str, Any] = challenge.request
        token = await issuer.issue(
            TokenRequest(
                int(request["amount"]),
                request["currency"],
                parse_time(challenge.expires or "", "expires"),
                request["methodDetails"]["networkId"],
            )
        )
        payload = {"spt": token, "externalId": request["externalId"]}
        return mpp.Credential(challenge=challenge.to_echo(), payload=payload).to_authorization()

    return ClientMethod(method=AUTHORIZE, create_credential=create_credential)


@pytest.fixture
async def sandbox(stripe_url: str) -> AsyncIterator[SptSandbox]:
    async with SptSandbox(stripe_url).running() as running:
        yield running


@pytest.fixture
async def station(database_url: str, sandbox: SptSandbox) -> AsyncIterator[Station]:
    settings = Settings(
        database_url=database_url,
        http_port=0,
        ocpp_port=0,
        admin_token=e2e.ADMIN_TOKEN,
        secret_key="pympp-interop-secret-0123456789abcdef",
        stripe_api_key=SANDBOX_API_KEY,
        stripe_api_base=sandbox.url,
        log_level="WARNING",
    )
    async with running_station(settings) as running:
        yield running


async def _negotiate(world: e2e.World) -> dict[str, Any]:
    async with httpx.AsyncClient(
        base_url=world.base_url, auth=AgentSigner(world.agent_id, world.key)
    ) as signed:
        opened = await signed.post(
            "/v1/negotiations", json={"charge_point_id": "CP-1", "energy_kwh": "5"}
        )
    assert opened.status_code == 201, opened.text
    return opened.json()  # type: ignore[no-any-return]


def _accept(neg: dict[str, Any]) -> tuple[str, dict[str, str]]:
    return f"/v1/negotiations/{neg['negotiation_id']}/accept", {
        "offer_id": neg["offer"]["offer_id"],
        "cap": neg["offer"]["recommended_cap"],
    }


async def test_pympps_client_pays_the_station_on_authorize(
    world: e2e.World, sandbox: SptSandbox
) -> None:
    issuer = StripeTokenIssuer(SANDBOX_API_KEY, "pm_card_visa", api_base=sandbox.url)
    transport = PaymentTransport(
        methods=[authorize_method(issuer)],
        inner=SigningTransport(AgentSigner(world.agent_id, world.key)),
    )
    neg = await _negotiate(world)
    path, body = _accept(neg)

    async with e2e.charge_point(world.station) as sim:
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.5")))
        await asyncio.wait_for(sim.booted.wait(), 10)
        async with httpx.AsyncClient(base_url=world.base_url, transport=transport) as client:
            response = await client.post(path, json=body)

    assert response.status_code == 201, response.text
    session = response.json()
    assert session["payment"]["reference"].startswith("pi_")
    assert "payment-receipt" not in response.headers  # the draft: none on registration
    ((_, token),) = sandbox.tokens.items()
    assert token.used_by is not None and token.currency == "usd"


async def test_pympps_retry_under_the_auth_layer_replays_the_nonce(
    world: e2e.World, sandbox: SptSandbox
) -> None:
    """Why `SigningTransport` exists: signed by `httpx.Auth`, pympp's retry reuses the nonce."""
    issuer = StripeTokenIssuer(SANDBOX_API_KEY, "pm_card_visa", api_base=sandbox.url)
    transport = PaymentTransport(methods=[authorize_method(issuer)])
    neg = await _negotiate(world)
    path, body = _accept(neg)

    async with httpx.AsyncClient(
        base_url=world.base_url, transport=transport, auth=AgentSigner(world.agent_id, world.key)
    ) as client:
        response = await client.post(path, json=body)

    assert response.status_code == 401, response.text
    assert "nonce" in response.json()["detail"]
