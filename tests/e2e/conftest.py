"""End to end: a running station (real HTTP and OCPP sockets, real database),
localstripe through the real stripe SDK, signed agents and simulated charge points."""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import mpp
import pytest
import stripe

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from simulators.stripe_sandbox import SANDBOX_API_KEY
from station.app import Station, running_station
from station.settings import Settings
from vehicle.payer import parse_challenge
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64

ADMIN_TOKEN = "e2e-admin-token-0123456789"
SECRET = "e2e-secret-key-0123456789abcdefghij"


def settings_for(database_url: str, stripe_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url,
        "http_port": 0,
        "ocpp_port": 0,
        "admin_token": ADMIN_TOKEN,
        "secret_key": SECRET,
        "stripe_api_key": SANDBOX_API_KEY,
        "stripe_api_base": stripe_url,
        "stripe_timeout_s": 10,
        "log_level": "WARNING",
        **overrides,
    }
    return Settings(**values)


@pytest.fixture
def stripe_client(stripe_url: str) -> stripe.StripeClient:
    return stripe.StripeClient(api_key=SANDBOX_API_KEY, base_addresses={"api": stripe_url})


def intent_in_stripe(client: stripe.StripeClient, reference: str) -> dict[str, Any]:
    """The PaymentIntent as localstripe has it, with what was captured."""
    doc = client.v1.payment_intents.retrieve(reference).to_dict()
    charges = (doc.get("charges") or {}).get("data") or []
    charge = charges[0] if charges else {}
    captured = 0
    if doc["status"] == "succeeded":
        captured = int(charge.get("amount", 0)) - int(charge.get("amount_refunded", 0))
    return {"status": doc["status"], "amount": doc["amount"], "captured": captured}


def refunds_in_stripe(client: stripe.StripeClient, reference: str) -> list[dict[str, Any]]:
    """The refunds localstripe has made of a PaymentIntent: amount and metadata."""
    page = client.v1.refunds.list({"payment_intent": reference}).to_dict()
    return [{"amount": r["amount"], "metadata": r.get("metadata") or {}} for r in page["data"]]


@dataclass
class World:
    station: Station
    admin: httpx.AsyncClient
    agent: httpx.AsyncClient
    agent_id: str

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.station.http_port}"

    @property
    def ocpp(self) -> str:
        return f"ws://127.0.0.1:{self.station.ocpp_port}/ocpp"

    async def charge_point(self, version: str, **kw: Any) -> SimulatedChargePoint:
        cp_id = f"CP-{secrets.token_hex(4)}"
        password = secrets.token_urlsafe(18)[:24]
        response = await self.admin.post(
            "/v1/admin/charge-points", json={"charge_point_id": cp_id, "password": password}
        )
        assert response.status_code == 201, response.text
        options = {"time_scale": 600, "meter_interval_s": 60, "charger_max_kw": 50, **kw}
        return SimulatedChargePoint(self.ocpp, cp_id, password, version, **options)

    async def negotiate(self, cp: SimulatedChargePoint, energy_kwh: str = "10") -> dict[str, Any]:
        response = await self.agent.post(
            "/v1/negotiations",
            json={"charge_point_id": cp.charge_point_id, "evse_id": 1, "energy_kwh": energy_kwh},
        )
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def challenge(
        self, negotiation: dict[str, Any], cap: str, intent: str = "authorize"
    ) -> mpp.Challenge:
        response = await self.accept(negotiation, cap)
        assert response.status_code == 402, response.text
        assert response.headers["cache-control"] == "no-store"
        challenge = parse_challenge(response.headers["www-authenticate"], (intent,))
        assert challenge.intent == intent, response.headers["www-authenticate"]
        return challenge

    async def accept(
        self, negotiation: dict[str, Any], cap: str, authorization: str | None = None
    ) -> httpx.Response:
        headers = {"Authorization": authorization} if authorization else {}
        return await self.agent.post(
            f"/v1/negotiations/{negotiation['negotiation_id']}/accept",
            json={"offer_id": negotiation["offer"]["offer_id"], "cap": cap},
            headers=headers,
        )

    async def pay(
        self,
        negotiation: dict[str, Any],
        cap: str,
        payment_method: str = "pm_card_visa",
        intent: str = "authorize",
    ) -> httpx.Response:
        challenge = await self.challenge(negotiation, cap, intent)
        return await self.accept(negotiation, cap, credential(challenge, payment_method))


def credential(challenge: mpp.Challenge, payment_method: str = "pm_card_visa") -> str:
    return mpp.Credential(
        challenge=challenge.to_echo(), payload={"payment_method": payment_method}
    ).to_authorization()


@pytest.fixture
def make_world(database_url: str, stripe_url: str) -> Callable[..., Any]:
    """Start a station (with setting overrides), an operator client and one signed agent."""
    from contextlib import asynccontextmanager

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[World]:
        settings = settings_for(database_url, stripe_url, **overrides)
        async with running_station(settings) as station:
            base = f"http://127.0.0.1:{station.http_port}"
            headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
            async with httpx.AsyncClient(base_url=base, headers=headers, timeout=15) as admin:
                key, _ = generate_keypair()
                response = await admin.post(
                    "/v1/admin/agents",
                    json={
                        "name": "e2e-car",
                        "public_key": public_key_b64(key),
                        "currency": "usd",
                        "limit_per_session": "100.00",
                        "limit_per_window": "1000.00",
                        "window_hours": 24,
                    },
                )
                assert response.status_code == 201, response.text
                agent_id = response.json()["agent_id"]
                async with httpx.AsyncClient(
                    base_url=base, auth=AgentSigner(agent_id, key), timeout=15
                ) as agent:
                    yield World(station, admin, agent, agent_id)

    return start


@pytest.fixture
async def world(make_world: Callable[..., Any]) -> AsyncIterator[World]:
    async with make_world() as running:
        yield running


def battery(kwh_wanted: str = "8") -> Battery:
    """A 60 kWh car at 20 % that wants `kwh_wanted` (full power all the way, up to 48 kWh)."""
    capacity, soc = Decimal(60), Decimal("0.2")
    return Battery(capacity_kwh=capacity, soc=soc, target_soc=soc + Decimal(kwh_wanted) / capacity)


@pytest.fixture
async def world_short_ttl(make_world: Callable[..., Any]) -> AsyncIterator[World]:
    async with make_world(challenge_ttl_s=1) as running:
        yield running
