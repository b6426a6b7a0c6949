"""Several `chargepay serve` nodes on one PostgreSQL are one station (issue 11).

Real processes, real sockets, localstripe through the stripe SDK: a charge point
connected to node A is paid for, followed and stopped through node B; one
connection per charge point id across nodes; the node holding a charging session
is SIGKILLed and the charge point carries on through another node, settled once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe
import websockets
from websockets.asyncio.client import connect

from simulators.charge_point import SimulatedChargePoint
from simulators.stripe_sandbox import SANDBOX_API_KEY
from tests.cluster.nodes import LEASE_S, Balancer, Clients, clients, nodes, settled
from tests.e2e.conftest import battery, credential, intent_in_stripe
from vehicle.payer import parse_challenge

pytestmark = pytest.mark.postgres


@pytest.fixture
def stripe_client(stripe_url: str) -> stripe.StripeClient:
    return stripe.StripeClient(api_key=SANDBOX_API_KEY, base_addresses={"api": stripe_url})


async def _charge_point(c: Clients, url: str, **kw: Any) -> SimulatedChargePoint:
    cp_id, password = f"CP-{secrets.token_hex(4)}", secrets.token_urlsafe(18)[:24]
    response = await c.admin[0].post(
        "/v1/admin/charge-points", json={"charge_point_id": cp_id, "password": password}
    )
    assert response.status_code == 201, response.text
    options = {"time_scale": 300, "meter_interval_s": 30, "charger_max_kw": 22, **kw}
    return SimulatedChargePoint(url, cp_id, password, "ocpp2.0.1", **options)


async def _pay(agent: httpx.AsyncClient, cp: SimulatedChargePoint, cap: str) -> httpx.Response:
    response = await agent.post(
        "/v1/negotiations",
        json={"charge_point_id": cp.charge_point_id, "evse_id": 1, "energy_kwh": "20"},
    )
    assert response.status_code == 201, response.text
    negotiation = response.json()
    url = f"/v1/negotiations/{negotiation['negotiation_id']}/accept"
    body = {"offer_id": negotiation["offer"]["offer_id"], "cap": cap}
    challenge_response = await agent.post(url, json=body)
    assert challenge_response.status_code == 402, challenge_response.text
    challenge = parse_challenge(challenge_response.headers["www-authenticate"], ("authorize",))
    return await agent.post(url, json=body, headers={"Authorization": credential(challenge)})


async def _events(
    agent: httpx.AsyncClient,
    session_id: str,
    until: str,
    last_event_id: int | None = None,
    timeout_s: float = 40,
) -> list[dict[str, Any]]:
    """SSE events (name, data, id) until one named ``until`` (or the stream ends)."""
    headers = {} if last_event_id is None else {"Last-Event-ID": str(last_event_id)}
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    async with asyncio.timeout(timeout_s):
        async with agent.stream(
            "GET", f"/v1/sessions/{session_id}/events", headers=headers, timeout=None
        ) as response:
            assert response.status_code == 200
            async for line in response.aiter_lines():
                if line.startswith("id: "):
                    current["id"] = int(line[4:])
                elif line.startswith("event: "):
                    current["name"] = line[7:]
                elif line.startswith("data: "):
                    current["data"] = json.loads(line[6:])
                elif not line and "name" in current:
                    out.append(current)
                    if current["name"] == until:
                        return out
                    current = {}
    return out


async def _readings(plug: Any, count: int, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while len(plug.readings_wh) < count:  # noqa: ASYNC110 (the simulator has no event)
            await asyncio.sleep(0.1)


async def _charge_points(admin: httpx.AsyncClient) -> dict[str, Any]:
    return {p["charge_point_id"]: p for p in (await admin.get("/v1/admin/charge-points")).json()}


@pytest.mark.unmigrated  # the two nodes start at once and migrate the database in turn
async def test_pay_follow_and_stop_through_b_for_a_charge_point_on_a(
    pg_url: str, stripe_url: str, tmp_path: Path, stripe_client: stripe.StripeClient
) -> None:
    async with nodes(pg_url, stripe_url, tmp_path, 2) as (a, b):
        c = await clients((a, b))
        sim = await _charge_point(c, a.ocpp)
        async with sim:
            await asyncio.wait_for(sim.booted.wait(), 15)
            plug = sim.plug_in(1, battery("20"))
            response = await _pay(c.agent[1], sim, "5.00")  # accept through B
            assert response.status_code == 201, response.text
            session = response.json()
            sid = session["session_id"]
            await asyncio.wait_for(plug.started.wait(), 15)  # started on A, from B

            stream_b = asyncio.create_task(_events(c.agent[1], sid, "settled"))
            await _readings(plug, 4)
            stopped = await c.agent[1].post(f"/v1/sessions/{sid}/stop")  # stop through B
            assert stopped.status_code == 202, stopped.text
            await asyncio.wait_for(plug.ended.wait(), 15)
            doc = await settled(c.agent[1], sid)
            events_b = await stream_b
            # The whole stream again, on A, resumed after B's first stored event.
            numbered = [e for e in events_b if "id" in e]
            replay_a = await _events(c.agent[0], sid, "settled", last_event_id=numbered[0]["id"])
        # Connected nowhere now: a pay through B is refused as on one node, no hold placed.
        await _until(lambda p: not p[sim.charge_point_id]["connected"], c)
        away = await _pay(c.agent[1], sim, "5.00")
        await c.aclose()

    assert doc["status"] == "settled"
    assert away.status_code == 503 and away.json()["code"] == "station_unavailable", away.text
    names = [e["name"] for e in events_b]
    assert names.count("meter") >= 2 and names[-1] == "settled", names
    ids = [e["id"] for e in numbered]
    assert ids == sorted(ids) and len(ids) == len(set(ids))
    assert [e["id"] for e in replay_a] == ids[1:]
    assert [e["name"] for e in replay_a] == [e["name"] for e in numbered[1:]]
    captured = int(Decimal(doc["captured"]) * 100)
    stripe_view = intent_in_stripe(stripe_client, session["payment"]["reference"])
    assert stripe_view == {"status": "succeeded", "amount": 500, "captured": captured}
    assert 0 < captured <= 500
    assert plug.stop_reason is not None and plug.energy_wh is not None and plug.energy_wh > 0


async def test_one_connection_per_charge_point_across_nodes(
    pg_url: str, stripe_url: str, tmp_path: Path
) -> None:
    async with nodes(pg_url, stripe_url, tmp_path, 2) as (a, b):
        c = await clients((a, b))
        cp_id, password = f"CP-{secrets.token_hex(4)}", "cluster-lease-password-01"
        response = await c.admin[0].post(
            "/v1/admin/charge-points", json={"charge_point_id": cp_id, "password": password}
        )
        assert response.status_code == 201
        token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
        options: dict[str, Any] = {
            "subprotocols": ["ocpp2.0.1"],
            "additional_headers": {"Authorization": f"Basic {token}"},
        }
        async with connect(f"{a.ocpp}/{cp_id}", **options) as on_a:
            await _until(lambda p: p[cp_id]["connected"] and p[cp_id]["node_id"] == "node-a", c)
            wrong = {**options, "additional_headers": {"Authorization": "Basic eDp5"}}
            with pytest.raises(websockets.InvalidStatus):  # a failed attempt takes nothing
                async with connect(f"{b.ocpp}/{cp_id}", **wrong):
                    pass
            async with connect(f"{b.ocpp}/{cp_id}", **options) as on_b:
                # A learns that B took the charge point over and closes its connection.
                await asyncio.wait_for(on_a.wait_closed(), 10)
                assert on_a.close_reason and "node-b" in on_a.close_reason
                await _until(lambda p: p[cp_id]["connected"] and p[cp_id]["node_id"] == "node-b", c)
                await asyncio.sleep(0.5)  # A's close recorded nothing over B's connection
                assert (await _charge_points(c.admin[0]))[cp_id]["node_id"] == "node-b"
                pong = await on_b.ping()
                await asyncio.wait_for(pong, 5)
            await _until(lambda p: not p[cp_id]["connected"], c)

            # A node that dies keeps its charge points only for the lease time.
            async with connect(f"{a.ocpp}/{cp_id}", **options):
                await _until(lambda p: p[cp_id]["connected"] and p[cp_id]["node_id"] == "node-a", c)
                a.kill()
                await asyncio.sleep(LEASE_S + 1.5)
                await _until(lambda p: not p[cp_id]["connected"], c)  # B records it, A is dead
                sim = SimulatedChargePoint(a.ocpp, cp_id, password, "ocpp2.0.1")
                refused = await _pay(c.agent[1], sim, "5.00")
        await c.aclose()
    assert refused.status_code == 503, refused.text
    assert "is not connected" in refused.json()["detail"], refused.text  # not a time-out


async def _until(check: Any, c: Clients, timeout_s: float = 10) -> None:
    async with asyncio.timeout(timeout_s):
        while True:
            points = await _charge_points(c.admin[-1])
            if check(points):
                return
            await asyncio.sleep(0.1)


async def test_the_node_holding_a_charging_session_dies_and_it_settles_once_elsewhere(
    pg_url: str, stripe_url: str, tmp_path: Path, stripe_client: stripe.StripeClient
) -> None:
    async with nodes(pg_url, stripe_url, tmp_path, 3) as (a, b, c_node):
        c = await clients((a, b, c_node))
        async with Balancer([a.ocpp_port, b.ocpp_port, c_node.ocpp_port]) as balancer:
            sim = await _charge_point(c, balancer.ocpp, reconnect_max_s=0.3)
            async with sim:
                await asyncio.wait_for(sim.booted.wait(), 15)
                await _until(lambda p: p[sim.charge_point_id]["node_id"] == "node-a", c)
                plug = sim.plug_in(1, battery("20"))
                response = await _pay(c.agent[1], sim, "5.00")
                assert response.status_code == 201, response.text
                session = response.json()
                sid = session["session_id"]
                await asyncio.wait_for(plug.started.wait(), 15)
                await _readings(plug, 3)

                a.kill()  # the node holding the charge point and metering the session
                await _until(lambda p: p[sim.charge_point_id]["node_id"] == "node-b", c, 20)
                seen = len(plug.readings_wh)
                await _readings(plug, seen + 3)  # metering goes on through B
                stopped = await c.agent[2].post(f"/v1/sessions/{sid}/stop")  # through C
                assert stopped.status_code == 202, stopped.text
                await asyncio.wait_for(plug.ended.wait(), 20)
                doc = await settled(c.agent[2], sid)
                after = (await c.agent[1].get(f"/v1/sessions/{sid}")).json()
        await c.aclose()

    assert doc["status"] == "settled" and after["captured"] == doc["captured"]
    assert plug.energy_wh is not None
    # Settled at what was metered: every reading reached the station (none lost, none twice).
    assert Decimal(doc["energy_kwh"]) * 1000 == Decimal(plug.energy_wh), (doc, plug.energy_wh)
    captured = int(Decimal(doc["captured"]) * 100)
    assert intent_in_stripe(stripe_client, session["payment"]["reference"]) == {
        "status": "succeeded",
        "amount": 500,
        "captured": captured,
    }
    intent = stripe_client.v1.payment_intents.retrieve(session["payment"]["reference"]).to_dict()
    (charge,) = intent["charges"]["data"]
    assert charge["captured"]
