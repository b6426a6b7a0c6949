"""The negotiation and session API (PROTOCOL §2–4) as an agent sees it, without payment."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import httpx
import pytest

from station.app import Station, running_station
from station.settings import Settings
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64

ADMIN = "api-admin-token-0123456789"


@dataclass
class Api:
    station: Station
    admin: httpx.AsyncClient
    agent: httpx.AsyncClient
    other: httpx.AsyncClient


async def _agent(admin: httpx.AsyncClient, base: str) -> httpx.AsyncClient:
    key, _ = generate_keypair()
    response = await admin.post(
        "/v1/admin/agents",
        json={
            "name": "api-car",
            "public_key": public_key_b64(key),
            "currency": "usd",
            "limit_per_session": "50.00",
            "limit_per_window": "200.00",
            "window_hours": 24,
        },
    )
    assert response.status_code == 201, response.text
    return httpx.AsyncClient(base_url=base, auth=AgentSigner(response.json()["agent_id"], key))


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Api]:
    settings = Settings(
        database_url=database_url,
        http_port=0,
        ocpp_port=0,
        admin_token=ADMIN,  # type: ignore[arg-type]
        secret_key="api-secret-0123456789abcdef",  # type: ignore[arg-type]
        stripe_api_key="sk_test_unused",  # type: ignore[arg-type]
        negotiation_max_rounds=3,
        log_level="WARNING",
    )
    async with running_station(settings) as station:
        base = f"http://127.0.0.1:{station.http_port}"
        headers = {"Authorization": f"Bearer {ADMIN}"}
        async with httpx.AsyncClient(base_url=base, headers=headers) as admin:
            response = await admin.post(
                "/v1/admin/charge-points",
                json={"charge_point_id": "CP-1", "password": "api-test-password-0001"},
            )
            assert response.status_code == 201
            agent, other = await _agent(admin, base), await _agent(admin, base)
            async with agent, other:
                yield Api(station, admin, agent, other)


async def open_negotiation(client: httpx.AsyncClient, **body: Any) -> httpx.Response:
    return await client.post(
        "/v1/negotiations", json={"charge_point_id": "CP-1", "energy_kwh": "40", **body}
    )


async def test_a_negotiation_opens_with_a_signed_offer_at_the_list_price(api: Api) -> None:
    response = await open_negotiation(api.agent, max_power_kw="150", currency="usd")

    doc = response.json()
    assert response.status_code == 201
    assert doc["negotiation_id"].startswith("neg_") and doc["status"] == "open"
    assert (doc["round"], doc["max_rounds"]) == (1, 3)
    offer = doc["offer"]
    assert offer["offer_id"].startswith("off_") and offer["signature"]
    assert offer["tariff"] == {
        "currency": "usd",
        "energy_price_per_kwh": "0.4500",
        "session_fee": "0.50",
        "time_price_per_hour": "0.00",
        "idle_fee_per_minute": "0.10",
        "idle_grace_minutes": 10,
        "max_power_kw": "150",
    }
    assert (offer["estimated_cost"], offer["recommended_cap"]) == ("18.50", "20.35")


async def test_counters_concede_then_reject_then_the_negotiation_is_closed(api: Api) -> None:
    neg = (await open_negotiation(api.agent)).json()
    url = f"/v1/negotiations/{neg['negotiation_id']}/counter"

    rounds = [(await api.agent.post(url, json={"energy_price_per_kwh": "0.10"})) for _ in range(4)]

    docs = [r.json() for r in rounds]
    prices = [Decimal(d["offer"]["tariff"]["energy_price_per_kwh"]) for d in docs[:2]]
    assert [r.status_code for r in rounds] == [200, 200, 200, 409]
    assert [d.get("status") for d in docs[:3]] == ["open", "open", "rejected"]
    assert Decimal("0.45") > prices[0] > prices[1] >= Decimal("0.30")
    assert [d["round"] for d in docs[:3]] == [2, 3, 3] and docs[2]["detail"]
    assert docs[2]["offer"] is None and docs[3]["code"] == "negotiation_closed"


async def test_flexibility_alone_buys_a_cheaper_offer(api: Api) -> None:
    neg = (await open_negotiation(api.agent)).json()

    countered = await api.agent.post(
        f"/v1/negotiations/{neg['negotiation_id']}/counter",
        json={"max_power_kw": "50", "departure_at": "2099-01-01T00:00:00Z"},
    )

    price = Decimal(countered.json()["offer"]["tariff"]["energy_price_per_kwh"])
    assert countered.status_code == 200 and price < Decimal("0.45")


BAD_BODIES: list[dict[str, Any]] = [
    {"energy_kwh": 40},
    {"energy_kwh": "-1"},
    {"energy_kwh": "1e3"},
    {"energy_kwh": "forty"},
    {"energy_kwh": "40", "departure_at": "2026-11-22T18:00:00"},
    {"energy_kwh": "40", "currency": "eur"},
    {"energy_kwh": "40", "unexpected": True},
    {"energy_kwh": "40", "max_power_kw": "0"},
]


async def test_bad_input_is_a_422_problem(api: Api) -> None:
    neg = (await open_negotiation(api.agent)).json()
    accept = f"/v1/negotiations/{neg['negotiation_id']}/accept"

    responses = [
        *[
            await api.agent.post("/v1/negotiations", json={"charge_point_id": "CP-1", **body})
            for body in BAD_BODIES
        ],
        await api.agent.post(accept, json={"offer_id": neg["offer"]["offer_id"], "cap": "1.234"}),
        await api.agent.post(accept, json={"offer_id": neg["offer"]["offer_id"], "cap": 25.0}),
        await api.agent.post(
            f"/v1/negotiations/{neg['negotiation_id']}/counter",
            json={"energy_price_per_kwh": "0.12345"},
        ),
    ]

    for response in responses:
        assert response.status_code == 422, response.text
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_error"


async def test_unknown_and_foreign_things_are_404(api: Api) -> None:
    neg = (await open_negotiation(api.agent)).json()

    unknown_cp = await api.agent.post(
        "/v1/negotiations", json={"charge_point_id": "CP-404", "energy_kwh": "10"}
    )
    foreign_counter = await api.other.post(
        f"/v1/negotiations/{neg['negotiation_id']}/counter", json={"max_power_kw": "20"}
    )
    foreign_accept = await api.other.post(
        f"/v1/negotiations/{neg['negotiation_id']}/accept",
        json={"offer_id": neg["offer"]["offer_id"], "cap": "20.00"},
    )
    no_session = await api.agent.get("/v1/sessions/ses_nope")

    for response in (unknown_cp, foreign_counter, foreign_accept, no_session):
        assert response.status_code == 404, response.text
        assert response.json()["code"] == "not_found"


async def test_accept_without_a_credential_is_a_402_challenge(api: Api) -> None:
    neg = (await open_negotiation(api.agent)).json()

    response = await api.agent.post(
        f"/v1/negotiations/{neg['negotiation_id']}/accept",
        json={"offer_id": neg["offer"]["offer_id"], "cap": "25.00"},
    )

    assert response.status_code == 402
    assert response.headers["cache-control"] == "no-store"
    assert response.headers["www-authenticate"].startswith("Payment ")
    assert 'intent="authorize"' in response.headers["www-authenticate"]


async def test_a_superseded_offer_cannot_be_accepted(api: Api) -> None:
    neg = (await open_negotiation(api.agent)).json()
    await api.agent.post(
        f"/v1/negotiations/{neg['negotiation_id']}/counter", json={"energy_price_per_kwh": "0.10"}
    )

    response = await api.agent.post(
        f"/v1/negotiations/{neg['negotiation_id']}/accept",
        json={"offer_id": neg["offer"]["offer_id"], "cap": "25.00"},
    )

    assert (response.status_code, response.json()["code"]) == (409, "offer_expired")


async def test_the_receipt_key_is_published(api: Api) -> None:
    response = await api.agent.get("/v1/receipt-key")

    assert response.status_code == 200 and response.json()["alg"] == "ed25519"
