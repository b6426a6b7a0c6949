"""Per-agent ceilings (issue 15 item 8): open negotiations and event streams.

Past ``max_open_negotiations_per_agent`` live negotiations, or
``max_event_streams_per_agent`` open event streams, an agent gets 429
``rate_limited`` with ``Retry-After``; another agent is not affected. An
event stream whose client reads nothing is cut after
``event_stream_send_timeout_s`` and gives its slot back.
"""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import httpx

from station.app import Station, running_station
from station.settings import Settings
from station.store.payments import SessionRow
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64

ADMIN = "ceilings-admin-token-0123456789"


@asynccontextmanager
async def station_with(database_url: str, **overrides: Any) -> AsyncIterator[Station]:
    settings = Settings(
        database_url=database_url,
        http_port=0,
        ocpp_port=0,
        admin_token=ADMIN,  # type: ignore[arg-type]
        secret_key="ceilings-secret-0123456789abcdef",  # type: ignore[arg-type]
        stripe_api_key="sk_test_unused",  # type: ignore[arg-type]
        log_level="WARNING",
        **overrides,
    )
    async with running_station(settings) as station:
        async with _admin(station) as admin:
            response = await admin.post(
                "/v1/admin/charge-points",
                json={"charge_point_id": "CP-1", "password": "ceilings-password-0001"},
            )
            assert response.status_code == 201, response.text
        yield station


def _base(station: Station) -> str:
    return f"http://127.0.0.1:{station.http_port}"


def _admin(station: Station) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=_base(station), headers={"Authorization": f"Bearer {ADMIN}"})


async def new_agent(station: Station) -> AgentSigner:
    key, _ = generate_keypair()
    async with _admin(station) as admin:
        response = await admin.post(
            "/v1/admin/agents",
            json={
                "name": "ceiling-car",
                "public_key": public_key_b64(key),
                "currency": "usd",
                "limit_per_session": "50.00",
                "limit_per_window": "200.00",
            },
        )
    assert response.status_code == 201, response.text
    return AgentSigner(response.json()["agent_id"], key)


async def charging_session(station: Station, agent_id: str) -> str:
    """A session of ``agent_id`` as if charging (the event stream only needs one to exist)."""
    session_id = f"ses_{uuid.uuid4().hex[:20]}"
    async with station.db.session() as session:
        session.add(
            SessionRow(
                session_id=session_id,
                agent_id=agent_id,
                negotiation_id=f"neg_{uuid.uuid4().hex[:20]}",
                offer_id=f"off_{uuid.uuid4().hex[:20]}",
                challenge_id=uuid.uuid4().hex,
                charge_point_id="CP-1",
                evse_id=1,
                id_token=uuid.uuid4().hex[:20],
                remote_start_id=1,
                tariff={},
                cap=Decimal("10.00"),
                currency="usd",
                status="charging",
                transaction_ref="tx-1",
                started_at=datetime.now(UTC),
                payment_status="requires_capture",
            )
        )
    return session_id


def metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


async def test_an_agent_past_its_open_negotiations_gets_429_and_another_agent_does_not(
    database_url: str,
) -> None:
    async with station_with(database_url, max_open_negotiations_per_agent=3) as station:
        greedy, other = await new_agent(station), await new_agent(station)
        body = {"charge_point_id": "CP-1", "energy_kwh": "20"}
        async with (
            httpx.AsyncClient(base_url=_base(station), auth=greedy) as client,
            httpx.AsyncClient(base_url=_base(station), auth=other) as bystander,
            _admin(station) as admin,
        ):
            opened = await asyncio.gather(
                *(client.post("/v1/negotiations", json=body) for _ in range(6))
            )
            theirs = await bystander.post("/v1/negotiations", json=body)
            metrics = (await admin.get("/metrics")).text

    codes = sorted(r.status_code for r in opened)
    assert codes == [201] * 3 + [429] * 3
    refused = next(r for r in opened if r.status_code == 429)
    assert refused.json()["code"] == "rate_limited"
    assert refused.headers["content-type"].startswith("application/problem+json")
    # Retry-After: when the first of its live negotiations expires.
    assert 1 <= int(refused.headers["Retry-After"]) <= 3600
    assert theirs.status_code == 201
    assert metric(metrics, 'chargepay_http_rate_limited_total{limit="open_negotiations"}') == 3


async def test_an_agent_past_its_event_streams_gets_429_and_a_closed_one_frees_its_slot(
    database_url: str,
) -> None:
    async with station_with(database_url, max_event_streams_per_agent=2) as station:
        agent = await new_agent(station)
        session_id = await charging_session(station, agent.agent_id)
        url = f"/v1/sessions/{session_id}/events"
        async with httpx.AsyncClient(base_url=_base(station), auth=agent, timeout=10) as client:
            first = await client.send(client.build_request("GET", url), stream=True)
            second = await client.send(client.build_request("GET", url), stream=True)
            third = await client.get(url)
            await first.aclose()
            for _ in range(100):  # the station hears the disconnect
                if station.api.state.event_streams.open(agent.agent_id) < 2:
                    break
                await asyncio.sleep(0.05)
            fourth = await client.send(client.build_request("GET", url), stream=True)
            await second.aclose()
            await fourth.aclose()

    assert first.status_code == second.status_code == 200
    assert third.status_code == 429 and third.json()["code"] == "rate_limited"
    assert int(third.headers["Retry-After"]) >= 1
    assert fourth.status_code == 200


async def test_an_event_stream_whose_client_reads_nothing_is_cut(database_url: str) -> None:
    async with station_with(database_url, event_stream_send_timeout_s=1.0) as station:
        agent = await new_agent(station)
        session_id = await charging_session(station, agent.agent_id)
        # The signed request, sent by hand on a socket that will never be read.
        request = httpx.Request("GET", f"{_base(station)}/v1/sessions/{session_id}/events")
        signed = next(agent.auth_flow(request))
        head = f"GET /v1/sessions/{session_id}/events HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in signed.headers.items()
        )
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        loop = asyncio.get_running_loop()
        await loop.sock_connect(sock, ("127.0.0.1", station.http_port))
        await loop.sock_sendall(sock, (head + "\r\n").encode())
        events = station.payments.events
        for _ in range(200):
            if session_id in events._subscribers:
                break
            await asyncio.sleep(0.02)
        assert session_id in events._subscribers, "the stream did not start"
        padding = "x" * 16_384
        for i in range(4000):  # 64 MB of meter events, far past any socket buffer
            events.publish(session_id, "meter", {"n": i, "pad": padding})
            await asyncio.sleep(0)
            if session_id not in events._subscribers:
                break
        slots = getattr(station.api.state, "event_streams", None)
        for _ in range(100):  # the slot is given back as the response ends, just after
            slots_left = slots.open(agent.agent_id) if slots is not None else 0
            if session_id not in events._subscribers and slots_left == 0:
                break
            await asyncio.sleep(0.05)
        still_subscribed = session_id in events._subscribers
        slots_left = slots.open(agent.agent_id) if slots is not None else 0
        sock.close()

    assert not still_subscribed
    assert slots_left == 0
