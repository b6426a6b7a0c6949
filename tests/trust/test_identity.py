"""Agent identity over real HTTP: only fresh, correctly signed requests get in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx

from station.app import Station, running_station
from tests.trust.conftest import (
    ADMIN_TOKEN,
    SignedAgent,
    base_url,
    register_agent,
    station_settings,
)
from vehicle.signing import AgentSigner, generate_keypair


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert response.json()["code"] == code


async def test_a_signed_request_identifies_the_agent(agent_client: httpx.AsyncClient) -> None:
    response = await agent_client.get("/v1/agents/me")

    assert response.status_code == 200, response.text
    assert response.json()["remaining"] == "50.00"


async def test_a_signed_request_with_a_body_is_accepted(
    station: Station, agent: SignedAgent
) -> None:
    async with httpx.AsyncClient(base_url=base_url(station), auth=agent.signer()) as client:
        request = client.build_request("GET", "/v1/agents/me?x=%20y", content=b'{"a": 1}')
        response = await client.send(request)

    assert response.status_code == 200, response.text


async def test_an_unsigned_request_is_refused(station: Station) -> None:
    async with httpx.AsyncClient(base_url=base_url(station)) as client:
        response = await client.get("/v1/agents/me")

    assert_problem(response, 401, "unauthenticated")


async def test_an_unknown_key_is_refused(station: Station) -> None:
    key, _ = generate_keypair()
    async with httpx.AsyncClient(
        base_url=base_url(station), auth=AgentSigner("agt_nobody", key)
    ) as client:
        response = await client.get("/v1/agents/me")

    assert_problem(response, 401, "unauthenticated")


async def test_a_signature_by_another_key_is_refused(station: Station, agent: SignedAgent) -> None:
    impostor, _ = generate_keypair()
    async with httpx.AsyncClient(
        base_url=base_url(station), auth=AgentSigner(agent.agent_id, impostor)
    ) as client:
        response = await client.get("/v1/agents/me")

    assert_problem(response, 401, "unauthenticated")


async def test_a_tampered_body_is_refused(station: Station, agent: SignedAgent) -> None:
    request = httpx.Request("GET", f"{base_url(station)}/v1/agents/me", content=b'{"cap": "1"}')
    agent.signer().sign(request)
    tampered = httpx.Request("GET", request.url, headers=request.headers, content=b'{"cap": "9"}')
    async with httpx.AsyncClient() as client:
        response = await client.send(tampered)

    assert_problem(response, 401, "unauthenticated")


async def test_a_body_without_content_digest_is_refused(
    station: Station, agent: SignedAgent
) -> None:
    signed = agent.signer().sign(httpx.Request("GET", f"{base_url(station)}/v1/agents/me"))
    smuggled = httpx.Request("GET", signed.url, headers=signed.headers, content=b'{"a": 1}')
    async with httpx.AsyncClient() as client:
        response = await client.send(smuggled)

    assert_problem(response, 401, "unauthenticated")


async def test_a_signature_for_another_url_is_refused(station: Station, agent: SignedAgent) -> None:
    signed = agent.signer().sign(httpx.Request("GET", f"{base_url(station)}/v1/sessions/ses_1"))
    moved = httpx.Request("GET", f"{base_url(station)}/v1/agents/me", headers=signed.headers)
    async with httpx.AsyncClient() as client:
        response = await client.send(moved)

    assert_problem(response, 401, "unauthenticated")


async def test_a_stale_request_is_refused(station: Station, agent: SignedAgent) -> None:
    def two_minutes_ago() -> datetime:
        return datetime.now(UTC) - timedelta(seconds=120)

    async with httpx.AsyncClient(
        base_url=base_url(station), auth=agent.signer(clock=two_minutes_ago)
    ) as client:
        response = await client.get("/v1/agents/me")

    assert_problem(response, 401, "unauthenticated")


async def test_a_request_from_the_future_is_refused(station: Station, agent: SignedAgent) -> None:
    def in_two_minutes() -> datetime:
        return datetime.now(UTC) + timedelta(seconds=120)

    async with httpx.AsyncClient(
        base_url=base_url(station), auth=agent.signer(clock=in_two_minutes)
    ) as client:
        response = await client.get("/v1/agents/me")

    assert_problem(response, 401, "unauthenticated")


async def test_a_replayed_request_is_refused(station: Station, agent: SignedAgent) -> None:
    signed = agent.signer().sign(httpx.Request("GET", f"{base_url(station)}/v1/agents/me"))
    async with httpx.AsyncClient() as client:
        first = await client.send(signed)
        again = await client.send(httpx.Request("GET", signed.url, headers=signed.headers))

    assert first.status_code == 200, first.text
    assert_problem(again, 401, "unauthenticated")


async def test_a_signature_without_a_nonce_is_refused(station: Station, agent: SignedAgent) -> None:
    signed = agent.signer().sign(httpx.Request("GET", f"{base_url(station)}/v1/agents/me"))
    without_nonce = signed.headers["signature-input"].split(';nonce="')[0]
    headers = {**signed.headers, "signature-input": without_nonce}
    async with httpx.AsyncClient() as client:
        response = await client.send(httpx.Request("GET", signed.url, headers=headers))

    assert_problem(response, 401, "unauthenticated")


async def test_garbage_signature_headers_are_refused(station: Station) -> None:
    async with httpx.AsyncClient(base_url=base_url(station)) as client:
        response = await client.get(
            "/v1/agents/me", headers={"Signature-Input": "(((", "Signature": "sig1=:AA==:"}
        )

    assert_problem(response, 401, "unauthenticated")


async def test_a_suspended_agent_is_refused_at_once(
    admin: httpx.AsyncClient, agent_client: httpx.AsyncClient, agent: SignedAgent
) -> None:
    suspended = await admin.post(
        f"/v1/admin/agents/{agent.agent_id}/suspend", json={"reason": "stolen car"}
    )

    response = await agent_client.get("/v1/agents/me")

    assert suspended.status_code == 200, suspended.text
    assert_problem(response, 403, "agent_suspended")


async def test_a_resumed_agent_is_let_in_again(
    admin: httpx.AsyncClient, agent_client: httpx.AsyncClient, agent: SignedAgent
) -> None:
    await admin.post(f"/v1/admin/agents/{agent.agent_id}/suspend", json={"reason": "check"})
    await admin.post(f"/v1/admin/agents/{agent.agent_id}/resume", json={})

    response = await agent_client.get("/v1/agents/me")

    assert response.status_code == 200, response.text


async def test_a_request_replayed_to_another_node_is_refused(database_url: str) -> None:
    async with (
        running_station(station_settings(database_url, node_id="node-a")) as node_a,
        running_station(station_settings(database_url, node_id="node-b")) as node_b,
    ):
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=base_url(node_a), headers=headers) as admin:
            agent = await register_agent(admin)
        # Both nodes sit behind one public name, as behind a load balancer.
        signed = agent.signer().sign(httpx.Request("GET", "http://station.test/v1/agents/me"))
        async with httpx.AsyncClient() as client:
            first = await client.send(_to(signed, node_a))
            replayed = await client.send(_to(signed, node_b))

    assert first.status_code == 200, first.text
    assert_problem(replayed, 401, "unauthenticated")


def _to(signed: httpx.Request, node: Station) -> httpx.Request:
    """The same signed request, delivered to `node` (Host header kept)."""
    url = signed.url.copy_with(scheme="http", host="127.0.0.1", port=node.http_port)
    return httpx.Request(signed.method, url, headers=signed.headers)


async def test_behind_a_proxy_the_public_url_is_what_agents_sign(database_url: str) -> None:
    settings = station_settings(database_url, public_url="https://charge.example/")
    async with running_station(settings) as station:
        headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
        async with httpx.AsyncClient(base_url=base_url(station), headers=headers) as admin:
            agent = await register_agent(admin)
        public = agent.signer().sign(httpx.Request("GET", "https://charge.example/v1/agents/me"))
        internal = agent.signer().sign(httpx.Request("GET", f"{base_url(station)}/v1/agents/me"))
        async with httpx.AsyncClient() as client:
            via_proxy = await client.send(_to(public, station))
            direct = await client.send(internal)

    assert via_proxy.status_code == 200, via_proxy.text
    assert_problem(direct, 401, "unauthenticated")
