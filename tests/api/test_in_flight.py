"""A budget of signed requests in flight per (agent keyid, client address) (issue 15).

Past ``max_requests_in_flight_per_agent`` requests of one agent not yet
answered, its next ones get 429 ``rate_limited`` with ``Retry-After`` before
any signature check or database work, while another agent and a charge point
are served. The requests held here are signed POSTs whose bodies have not
all arrived: in flight for as long as the test likes, with no timing.
"""

from __future__ import annotations

import asyncio
import json
import socket

import httpx

from station.app import Station
from tests.api.test_ceilings import _admin, _base, metric, new_agent, station_with
from tests.ocpp.test_security import handshake_status
from vehicle.signing import AgentSigner, generate_keypair

BODY = json.dumps({"charge_point_id": "CP-1", "energy_kwh": "20"}).encode()


async def held_request(station: Station, agent: AgentSigner) -> socket.socket:
    """A signed negotiation whose last body byte is not sent yet."""
    request = httpx.Request(
        "POST",
        f"{_base(station)}/v1/negotiations",
        content=BODY,
        headers={"Content-Type": "application/json"},
    )
    signed = next(agent.auth_flow(request))
    head = "POST /v1/negotiations HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in signed.headers.items()
    )
    sock = socket.socket()
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    await loop.sock_connect(sock, ("127.0.0.1", station.http_port))
    await loop.sock_sendall(sock, (head + "\r\n").encode() + BODY[:-1])
    return sock


async def answer_of(sock: socket.socket) -> int:
    """Send the last body byte; the status of the answer."""
    loop = asyncio.get_running_loop()
    await loop.sock_sendall(sock, BODY[-1:])
    head = b""
    while b"\r\n" not in head:
        chunk = await asyncio.wait_for(loop.sock_recv(sock, 1024), 10)
        assert chunk, "closed without an answer"
        head += chunk
    sock.close()
    return int(head.split()[1])


async def test_one_agents_requests_in_flight_are_bounded_and_others_are_served(
    database_url: str,
) -> None:
    async with station_with(database_url, max_requests_in_flight_per_agent=3) as station:
        greedy, other = await new_agent(station), await new_agent(station)
        base = _base(station)
        async with (
            httpx.AsyncClient(base_url=base, auth=greedy, timeout=10) as greedy_client,
            httpx.AsyncClient(base_url=base, auth=other, timeout=10) as other_client,
            _admin(station) as admin,
        ):
            held = [await held_request(station, greedy) for _ in range(3)]
            for _ in range(200):  # the station has read their heads
                if station.api.state.in_flight.total() == 3:
                    break
                await asyncio.sleep(0.02)
            refused = await asyncio.gather(*(greedy_client.get("/v1/agents/me") for _ in range(5)))
            served = await other_client.get("/v1/agents/me")
            ocpp = f"ws://127.0.0.1:{station.ocpp_port}/ocpp"
            charge_point = await handshake_status(ocpp, "CP-1", "ceilings-password-0001")
            answers = [await answer_of(sock) for sock in held]
            again = await greedy_client.get("/v1/agents/me")
            metrics = (await admin.get("/metrics")).text

    assert {r.status_code for r in refused} == {429}
    problem = refused[0].json()
    assert problem["code"] == "rate_limited" and problem["retry_after_s"] == 1
    assert refused[0].headers["Retry-After"] == "1"
    assert refused[0].headers["content-type"].startswith("application/problem+json")
    assert served.status_code == 200, served.text
    assert charge_point == 101
    assert answers == [201, 201, 201]  # the held ones were worked on as usual
    assert again.status_code == 200  # and gave their budget back
    assert metric(metrics, 'chargepay_http_rate_limited_total{limit="in_flight"}') == 5


async def test_made_up_keyids_from_one_address_are_bounded_too(database_url: str) -> None:
    # Each made-up keyid is a new key for the per-agent budget; the address's budget holds.
    settings = {"max_requests_in_flight_per_agent": 16, "max_requests_in_flight_per_address": 3}
    async with station_with(database_url, **settings) as station:
        forgers = [AgentSigner(f"agt_made_up_{n}", generate_keypair()[0]) for n in range(4)]
        held = [await held_request(station, forger) for forger in forgers[:3]]
        for _ in range(200):  # the station has read their heads
            if station.api.state.in_flight_per_site.total() == 3:
                break
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=_base(station), auth=forgers[3], timeout=10) as c:
            refused = await c.get("/v1/agents/me")
        ocpp = f"ws://127.0.0.1:{station.ocpp_port}/ocpp"
        charge_point = await handshake_status(ocpp, "CP-1", "ceilings-password-0001")
        answers = [await answer_of(sock) for sock in held]
        real = await new_agent(station)
        async with httpx.AsyncClient(base_url=_base(station), auth=real, timeout=10) as client:
            served = await client.get("/v1/agents/me")

    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert charge_point == 101
    assert answers == [401, 401, 401]
    assert served.status_code == 200, served.text  # the address's budget was given back
    assert station.api.state.in_flight_per_site.total() == 0


def test_the_budget_is_per_keyid_and_site() -> None:
    from station.api.identity import _budget_key

    def key(keyid: str, address: str) -> tuple[str, str] | None:
        signature_input = f'sig1=("@method");keyid="{keyid}";created=1'.encode()
        scope = {"headers": [(b"signature-input", signature_input)], "client": (address, 1)}
        return _budget_key(scope)

    assert key("agt_a", "2001:db8::1") == key("agt_a", "2001:db8::ffff") != key("agt_b", "::1")
    assert key("agt_a", "2001:db8:0:1::1") != key("agt_a", "2001:db8::1")
    assert key("agt_a", "192.0.2.1") == ("agt_a", "192.0.2.1")
    assert _budget_key({"headers": [], "client": ("192.0.2.1", 1)}) is None  # unsigned
    assert _budget_key({"headers": [(b"signature-input", b"garbage(")]}) is None
