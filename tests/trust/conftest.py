"""A running station (real HTTP on 127.0.0.1:0, real database) and signed agents."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from station.app import Station, running_station
from station.settings import Settings
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64

ADMIN_TOKEN = "test-admin-token-0123456789"


def station_settings(database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "database_url": database_url,
        "http_port": 0,
        "ocpp_port": 0,
        "admin_token": ADMIN_TOKEN,
        "secret_key": "test-secret-key-0123456789abcdef",
        "log_level": "WARNING",
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture
async def station(database_url: str) -> AsyncIterator[Station]:
    async with running_station(station_settings(database_url)) as running:
        yield running


def base_url(station: Station) -> str:
    return f"http://127.0.0.1:{station.http_port}"


@pytest.fixture
async def admin(station: Station) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Chargepay-Operator": "alice"}
    async with httpx.AsyncClient(base_url=base_url(station), headers=headers, timeout=10) as c:
        yield c


@dataclass
class SignedAgent:
    agent_id: str
    key: Ed25519PrivateKey

    def signer(self, **kw: object) -> AgentSigner:
        return AgentSigner(self.agent_id, self.key, **kw)  # type: ignore[arg-type]


async def register_agent(
    admin: httpx.AsyncClient,
    *,
    limit_per_session: str = "50.00",
    limit_per_window: str = "200.00",
    **extra: object,
) -> SignedAgent:
    key, _ = generate_keypair()
    response = await admin.post(
        "/v1/admin/agents",
        json={
            "name": "fleet-car-7",
            "public_key": public_key_b64(key),
            "currency": "usd",
            "limit_per_session": limit_per_session,
            "limit_per_window": limit_per_window,
            "window_hours": 24,
            **extra,
        },
    )
    assert response.status_code == 201, response.text
    return SignedAgent(response.json()["agent_id"], key)


@pytest.fixture
async def agent(admin: httpx.AsyncClient) -> SignedAgent:
    return await register_agent(admin)


@pytest.fixture
async def agent_client(station: Station, agent: SignedAgent) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        base_url=base_url(station), auth=agent.signer(), timeout=10
    ) as client:
        yield client
