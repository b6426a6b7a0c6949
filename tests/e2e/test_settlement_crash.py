"""Exactly-once settlement across a crash: the station runs as a subprocess
(`python -m station serve`), dies at a fault point during settlement, and on
restart its reconciler finishes the job — one capture, checked in localstripe."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
import stripe

from simulators.charge_point import SimulatedChargePoint
from simulators.ports import free_port
from simulators.stripe_sandbox import SANDBOX_API_KEY
from tests.e2e.conftest import (
    ADMIN_TOKEN,
    SECRET,
    World,
    battery,
    intent_in_stripe,
    refunds_in_stripe,
)
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64


class StationProcess:
    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.http = f"http://127.0.0.1:{env['CHARGEPAY_HTTP_PORT']}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, **extra: str) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "station", "serve"],
                env={**os.environ, **self.env, **extra},
                stdout=out,
                stderr=out,
            )

    async def ready(self) -> None:
        async with asyncio.timeout(30), httpx.AsyncClient() as client:
            while True:
                assert self.process is not None and self.process.poll() is None, self.log_text()
                try:
                    if (await client.get(f"{self.http}/healthz")).status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)

    async def exited(self) -> int:
        assert self.process is not None
        return await asyncio.wait_for(asyncio.to_thread(self.process.wait), 30)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextmanager
def station_process(database_url: str, stripe_url: str, tmp_path: Path) -> Iterator[StationProcess]:
    env = {
        "CHARGEPAY_DATABASE_URL": database_url,
        "CHARGEPAY_HTTP_PORT": str(free_port()),
        "CHARGEPAY_OCPP_PORT": str(free_port()),
        "CHARGEPAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "CHARGEPAY_SECRET_KEY": SECRET,
        "CHARGEPAY_STRIPE_API_KEY": SANDBOX_API_KEY,
        "CHARGEPAY_STRIPE_API_BASE": stripe_url,
        "CHARGEPAY_NODE_ID": "node-crash",
        "CHARGEPAY_LOG_LEVEL": "INFO",
    }
    process = StationProcess(env, tmp_path / "station.log")
    try:
        yield process
    finally:
        process.stop()


@pytest.mark.parametrize("fault", ["crash_after_capture_intent", "crash_after_capture"])
async def test_a_settlement_interrupted_by_a_crash_is_completed_once_after_restart(
    database_url: str,
    stripe_url: str,
    tmp_path: Path,
    stripe_client: stripe.StripeClient,
    fault: str,
) -> None:
    if fault == "crash_after_capture" and "postgres" in database_url:
        pytest.skip("one database is enough for the second fault point")
    with station_process(database_url, stripe_url, tmp_path) as station:
        station.start(CHARGEPAY_FAULT_INJECT=fault)
        await station.ready()
        admin, agent = await _register(station)
        world = World(station=None, admin=admin, agent=agent, agent_id="")  # type: ignore[arg-type]
        ocpp = f"ws://127.0.0.1:{station.env['CHARGEPAY_OCPP_PORT']}/ocpp"
        cp_id, password = "CP-CRASH", "crash-test-password-01"
        await admin.post(
            "/v1/admin/charge-points", json={"charge_point_id": cp_id, "password": password}
        )
        sim = SimulatedChargePoint(
            ocpp, cp_id, password, "ocpp2.0.1", time_scale=600, charger_max_kw=50
        )
        async with sim:
            await asyncio.wait_for(sim.booted.wait(), 10)
            plug = sim.plug_in(1, battery("5"))
            negotiation = await world.negotiate(sim, "5")
            response = await world.pay(negotiation, "5.00")
            assert response.status_code == 201, response.text
            session = response.json()
            code = await station.exited()
            before = intent_in_stripe(stripe_client, session["payment"]["reference"])

            station.start()
            await station.ready()
            settled = await _settled(agent, session["session_id"])
            await asyncio.wait_for(plug.ended.wait(), 10)

        after = intent_in_stripe(stripe_client, session["payment"]["reference"])
        receipt = (await agent.get(f"/v1/sessions/{session['session_id']}/receipt")).json()
        await admin.aclose()
        await agent.aclose()

    captured = int(Decimal(settled["captured"]) * 100)
    if fault == "crash_after_capture_intent":
        assert code == 70 and before["status"] == "requires_capture"
    else:
        assert code == 71 and before["status"] == "succeeded"
        assert before["captured"] == captured
    assert after == {"status": "succeeded", "amount": 500, "captured": captured}
    assert 0 < captured <= 500
    assert receipt["captured"] == settled["captured"] == receipt["total"]
    intent = stripe_client.v1.payment_intents.retrieve(session["payment"]["reference"]).to_dict()
    (charge,) = intent["charges"]["data"]
    assert charge["captured"] and len(charge["refunds"]["data"]) <= 1  # captured once


async def _register(station: StationProcess) -> tuple[httpx.AsyncClient, httpx.AsyncClient]:
    admin = httpx.AsyncClient(
        base_url=station.http, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}, timeout=15
    )
    key, _ = generate_keypair()
    response = await admin.post(
        "/v1/admin/agents",
        json={
            "name": "crash-car",
            "public_key": public_key_b64(key),
            "currency": "usd",
            "limit_per_session": "100.00",
            "limit_per_window": "1000.00",
            "window_hours": 24,
        },
    )
    assert response.status_code == 201, response.text
    agent = httpx.AsyncClient(
        base_url=station.http, auth=AgentSigner(response.json()["agent_id"], key), timeout=15
    )
    return admin, agent


async def _settled(agent: httpx.AsyncClient, session_id: str) -> dict[str, Any]:
    async with asyncio.timeout(30):
        while True:
            doc: dict[str, Any] = (await agent.get(f"/v1/sessions/{session_id}")).json()
            if doc["status"] in ("settled", "cancelled", "failed"):
                return doc
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("fault", ["crash_after_refund_intent", "crash_after_refund"])
async def test_a_refund_interrupted_by_a_crash_is_made_once_after_restart(
    database_url: str,
    stripe_url: str,
    tmp_path: Path,
    stripe_client: stripe.StripeClient,
    fault: str,
) -> None:
    """A session paid on `charge`: SIGKILL-like exit between "refund intended" and "refund
    done" (before the call, or after it with the outcome unrecorded); the restarted
    reconciler looks for the refund and makes it only if none was made."""
    if fault == "crash_after_refund" and "postgres" in database_url:
        pytest.skip("one database is enough for the second fault point")
    with station_process(database_url, stripe_url, tmp_path) as station:
        station.start(CHARGEPAY_FAULT_INJECT=fault)
        await station.ready()
        admin, agent = await _register(station)
        world = World(station=None, admin=admin, agent=agent, agent_id="")  # type: ignore[arg-type]
        ocpp = f"ws://127.0.0.1:{station.env['CHARGEPAY_OCPP_PORT']}/ocpp"
        cp_id, password = "CP-REFUND", "refund-test-password-01"
        await admin.post(
            "/v1/admin/charge-points", json={"charge_point_id": cp_id, "password": password}
        )
        sim = SimulatedChargePoint(
            ocpp, cp_id, password, "ocpp2.0.1", time_scale=600, charger_max_kw=50
        )
        async with sim:
            await asyncio.wait_for(sim.booted.wait(), 10)
            plug = sim.plug_in(1, battery("5"))
            negotiation = await world.negotiate(sim, "5")
            response = await world.pay(negotiation, "5.00", intent="charge")
            assert response.status_code == 201, response.text
            session = response.json()
            code = await station.exited()
            reference = session["payment"]["reference"]
            before = refunds_in_stripe(stripe_client, reference)

            station.start()
            await station.ready()
            settled = await _settled(agent, session["session_id"])
            await asyncio.wait_for(plug.ended.wait(), 10)

        receipt = (await agent.get(f"/v1/sessions/{session['session_id']}/receipt")).json()
        await admin.aclose()
        await agent.aclose()

    refunds = refunds_in_stripe(stripe_client, reference)
    back = 500 - int(Decimal(settled["captured"]) * 100)
    if fault == "crash_after_refund_intent":
        assert code == 72 and before == []
    else:
        assert code == 73 and [r["amount"] for r in before] == [back]
    assert 0 < back < 500
    assert refunds == [{"amount": back, "metadata": {"session_id": session["session_id"]}}]
    assert receipt["refunded"] == str(Decimal(back).scaleb(-2)) and receipt["intent"] == "charge"
