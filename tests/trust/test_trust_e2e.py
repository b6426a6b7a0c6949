"""Trust end to end: a running station, simulated charge points, localstripe.

The kill switch stops a charging session which then settles for what was
delivered; parallel accepts never pass an agent's limit together; agents
cannot see each other's sessions; /metrics moves as sessions run.
"""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal
from typing import Any

import httpx
import stripe

from station.services import agents
from station.store.unit_of_work import SqlUnitsOfWork
from tests.e2e import conftest as e2e
from tests.e2e.conftest import World, battery, credential, intent_in_stripe
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64

# The end-to-end fixtures, shared with tests/e2e.
make_world, world, stripe_client = e2e.make_world, e2e.world, e2e.stripe_client


async def admin_session(world: World, session_id: str) -> dict[str, Any]:
    response = await world.admin.get(f"/v1/admin/sessions/{session_id}")
    assert response.status_code == 200, response.text
    return dict(response.json())


async def wait_until(world: World, session_id: str, check: Any) -> dict:
    async with asyncio.timeout(20):
        while True:
            doc = await admin_session(world, session_id)
            if check(doc):
                return doc
            await asyncio.sleep(0.05)


async def second_agent(world: World, **limits: str) -> httpx.AsyncClient:
    key, _ = generate_keypair()
    response = await world.admin.post(
        "/v1/admin/agents",
        json={
            "name": "second-car",
            "public_key": public_key_b64(key),
            "currency": "usd",
            "limit_per_session": limits.get("limit_per_session", "100.00"),
            "limit_per_window": limits.get("limit_per_window", "1000.00"),
            "window_hours": 24,
        },
    )
    assert response.status_code == 201, response.text
    return httpx.AsyncClient(
        base_url=world.http, auth=AgentSigner(response.json()["agent_id"], key), timeout=15
    )


def metric(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        series, _, value = line.rpartition(" ")
        if series == (f"{name}{{{wanted}}}" if wanted else name):
            return float(value)
    return 0.0


async def connected_charge_points(world: World) -> float:
    """Connected charge points by /metrics, once the connection is recorded."""
    async with asyncio.timeout(5):
        while True:
            text = (await world.admin.get("/metrics")).text
            total = sum(
                float(line.rpartition(" ")[2])
                for line in text.splitlines()
                if line.startswith("chargepay_charge_points_connected{")
            )
            if total:
                return total
            await asyncio.sleep(0.05)


async def test_suspending_an_agent_stops_its_charging_session_and_settles_what_was_delivered(
    world: World, stripe_client: stripe.StripeClient
) -> None:
    cp = await world.charge_point("ocpp2.0.1", time_scale=200)
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("40"))
        negotiation = await world.negotiate(cp, "40")
        paid = await world.pay(negotiation, "30.00")
        assert paid.status_code == 201, paid.text
        session_id = paid.json()["session_id"]
        await wait_until(
            world,
            session_id,
            lambda s: s["status"] == "charging" and Decimal(s["energy_kwh"]) > 0,
        )

        suspended = await world.admin.post(
            f"/v1/admin/agents/{world.agent_id}/suspend", json={"reason": "stolen car"}
        )
        refused = await world.agent.get(f"/v1/sessions/{session_id}")
        await asyncio.wait_for(plug.ended.wait(), 20)
        settled = await wait_until(world, session_id, lambda s: s["status"] == "settled")

    in_stripe = intent_in_stripe(stripe_client, settled["payment"]["reference"])
    audit = [json.loads(x) for x in (await world.admin.get("/v1/admin/audit")).text.splitlines()]
    assert suspended.status_code == 200, suspended.text
    assert suspended.json()["sessions_stopping"] == [session_id]
    assert refused.status_code == 403
    assert refused.json()["code"] == "agent_suspended"
    assert settled["stop_reason"] == "agent_suspended"
    assert Decimal("0") < Decimal(settled["captured"]) < Decimal("30.00")
    assert Decimal(settled["captured"]) == Decimal(settled["cost"])
    assert in_stripe["status"] == "succeeded"
    assert in_stripe["captured"] == int(Decimal(settled["captured"]) * 100)
    assert Decimal(settled["energy_kwh"]) * 1000 == Decimal(plug.energy_wh or 0)
    assert Decimal(settled["energy_kwh"]) < Decimal("40")
    assert {"agent.suspended", "agent.sessions_stopped"} <= {row["action"] for row in audit}


async def test_two_parallel_accepts_over_the_window_limit_let_exactly_one_through(
    world: World,
) -> None:
    cps = [await world.charge_point("ocpp2.0.1") for _ in range(2)]
    async with (
        cps[0],
        cps[1],
        await second_agent(world, limit_per_session="10.00", limit_per_window="15.00") as agent,
    ):
        for cp in cps:
            await asyncio.wait_for(cp.booted.wait(), 10)
            cp.plug_in(1, battery("2"))
        world.agent = agent
        negotiations = [await world.negotiate(cp, "10") for cp in cps]
        challenges = [await world.challenge(n, "10.00") for n in negotiations]

        results = await asyncio.gather(
            *(
                world.accept(n, "10.00", credential(c))
                for n, c in zip(negotiations, challenges, strict=True)
            )
        )

        for response in results:
            if response.status_code == 201:
                await world.agent.post(f"/v1/sessions/{response.json()['session_id']}/stop")

    statuses = sorted(r.status_code for r in results)
    refused = next(r for r in results if r.status_code == 403).json()
    assert statuses == [201, 403]
    assert refused["code"] == "amount_exceeded"
    assert (refused["remaining"], refused["currency"]) == ("5.00", "usd")


async def test_an_agent_cannot_read_or_stop_another_agents_session(world: World) -> None:
    cp = await world.charge_point("ocpp1.6")
    async with cp, await second_agent(world) as stranger:
        await asyncio.wait_for(cp.booted.wait(), 10)
        cp.plug_in(1, battery("5"))
        negotiation = await world.negotiate(cp, "5")
        paid = await world.pay(negotiation, "5.00")
        session_id = paid.json()["session_id"]

        read = await stranger.get(f"/v1/sessions/{session_id}")
        stopped = await stranger.post(f"/v1/sessions/{session_id}/stop")
        receipt = await stranger.get(f"/v1/sessions/{session_id}/receipt")
        own = await world.agent.get(f"/v1/sessions/{session_id}")
        await world.agent.post(f"/v1/sessions/{session_id}/stop")

    assert paid.status_code == 201, paid.text
    assert [read.status_code, stopped.status_code, receipt.status_code] == [404, 404, 404]
    assert read.json()["code"] == "not_found"
    assert own.status_code == 200
    assert own.json()["status"] in ("authorized", "charging", "stopping")


async def test_metrics_move_as_sessions_run(world: World) -> None:
    before = (await world.admin.get("/metrics")).text
    cp = await world.charge_point("ocpp2.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        connected = await connected_charge_points(world)
        plug = cp.plug_in(1, battery("4"))
        negotiation = await world.negotiate(cp, "4")
        refused = await world.accept(await world.negotiate(cp, "4"), "500.00")
        paid = await world.pay(negotiation, "10.00")
        assert paid.status_code == 201, paid.text
        await asyncio.wait_for(plug.ended.wait(), 20)
        settled = await wait_until(
            world, paid.json()["session_id"], lambda s: s["status"] == "settled"
        )
    after = (await world.admin.get("/metrics")).text

    captured = float(Decimal(settled["captured"]))
    assert refused.status_code == 403
    assert metric(before, "chargepay_sessions", status="settled") == 0
    assert connected == 1
    assert metric(after, "chargepay_sessions", status="settled") == 1
    assert metric(after, "chargepay_money_captured", currency="usd") == captured
    assert metric(after, "chargepay_money_released", currency="usd") == 10.0 - captured
    assert metric(after, "chargepay_money_held", currency="usd") == 0
    assert metric(after, "chargepay_limit_refusals_total", currency="usd") == 1
    assert metric(after, "chargepay_agent_auth_failures_total", reason="unsigned") == 0
    for operation in ("authorize", "capture"):
        assert metric(after, "chargepay_stripe_request_seconds_count", operation=operation) >= 1
    assert metric(after, "chargepay_ocpp_messages_total", action="BootNotification", direction="in")
    assert metric(after, "chargepay_ocpp_messages_total", action="TransactionEvent", direction="in")


async def test_the_operator_filters_sessions(world: World) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        cp.plug_in(1, battery("5"))
        negotiation = await world.negotiate(cp, "5")
        paid = await world.pay(negotiation, "5.00")
        session_id = paid.json()["session_id"]
        await world.agent.post(f"/v1/sessions/{session_id}/stop")

    mine = await world.admin.get("/v1/admin/sessions", params={"agent_id": world.agent_id})
    by_cp = await world.admin.get(
        "/v1/admin/sessions", params={"charge_point_id": cp.charge_point_id}
    )
    none = await world.admin.get("/v1/admin/sessions", params={"agent_id": "agt_other"})
    future = await world.admin.get("/v1/admin/sessions", params={"since": "2999-01-01T00:00:00Z"})
    missing = await world.admin.get("/v1/admin/sessions/ses_nope")
    detail = await admin_session(world, session_id)

    assert [s["session_id"] for s in mine.json()] == [session_id]
    assert [s["session_id"] for s in by_cp.json()] == [session_id]
    assert none.json() == [] and future.json() == []
    assert missing.status_code == 404
    assert detail["agent_id"] == world.agent_id
    assert "meter_samples" in detail and "anomalies" in detail


async def test_the_operator_pause_refuses_new_authorisations_until_resumed(world: World) -> None:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        cp.plug_in(1, battery("5"))
        negotiation = await world.negotiate(cp, "5")
        await world.admin.post("/v1/admin/pause", json={"reason": "incident 42"})

        paused = await world.accept(negotiation, "5.00")
        await world.admin.post("/v1/admin/resume", json={"reason": "fixed"})
        resumed = await world.pay(negotiation, "5.00")
        await world.agent.post(f"/v1/sessions/{resumed.json()['session_id']}/stop")

    assert paused.status_code == 403
    assert paused.json()["code"] == "agent_suspended"
    assert resumed.status_code == 201, resumed.text


async def test_a_suspension_made_outside_the_api_stops_charging_within_seconds(
    world: World,
) -> None:
    cp = await world.charge_point("ocpp1.6", time_scale=200)
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("40"))
        negotiation = await world.negotiate(cp, "40")
        paid = await world.pay(negotiation, "30.00")
        session_id = paid.json()["session_id"]
        await wait_until(world, session_id, lambda s: Decimal(s["energy_kwh"]) > 0)

        # What `chargepay agents suspend` (or another node) does: the database only.
        async with SqlUnitsOfWork(world.station.db)() as uow:
            await agents.suspend(uow, world.agent_id, reason="lost key", actor="cli")
        await asyncio.wait_for(plug.ended.wait(), 20)
        settled = await wait_until(world, session_id, lambda s: s["status"] == "settled")

    assert settled["stop_reason"] == "agent_suspended"
    assert Decimal(0) < Decimal(settled["captured"]) < Decimal("30.00")
