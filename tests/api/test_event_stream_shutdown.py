"""SIGTERM while an agent follows its session's event stream: the stream ends at once.

A real `chargepay serve` process, a paying agent and a charging session: the
open stream must not hold the shutdown to uvicorn's deadline, nor end in a
CancelledError logged at error level.
"""

from __future__ import annotations

import asyncio
import signal
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from simulators.ports import free_port
from simulators.stripe_sandbox import SANDBOX_API_KEY
from tests.e2e.conftest import credential
from tests.ocpp.station_process import station_process
from vehicle.payer import parse_challenge
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64

ADMIN = {"Authorization": "Bearer test-admin-token-0123456789"}
CUT_OFF = ("Traceback", "CancelledError", "shutdown_overrun", "ERROR")


# The shutdown path is the same on either database; one is enough (a real process each).
@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_sigterm_ends_an_open_agent_event_stream_at_once(
    database_url: str, stripe_url: str, tmp_path: Path
) -> None:
    http_port, ocpp_port = free_port(), free_port()
    base = f"http://127.0.0.1:{http_port}"
    log = tmp_path / "station.log"
    env = {"CHARGEPAY_STRIPE_API_BASE": stripe_url, "CHARGEPAY_STRIPE_API_KEY": SANDBOX_API_KEY}
    key, _ = generate_keypair()

    async with (
        station_process(database_url, http_port, ocpp_port, log=log, env=env) as station,
        httpx.AsyncClient(base_url=base, headers=ADMIN, timeout=15) as admin,
    ):
        password = "p" * 20
        created = await admin.post(
            "/v1/admin/charge-points", json={"charge_point_id": "CP-1", "password": password}
        )
        registered = await admin.post(
            "/v1/admin/agents",
            json={
                "name": "car",
                "public_key": public_key_b64(key),
                "currency": "usd",
                "limit_per_session": "100.00",
                "limit_per_window": "1000.00",
            },
        )
        assert created.status_code == 201 and registered.status_code == 201, registered.text
        signer = AgentSigner(registered.json()["agent_id"], key)
        sim = SimulatedChargePoint(
            f"ws://127.0.0.1:{ocpp_port}/ocpp", "CP-1", password, "ocpp2.0.1",
            time_scale=10, meter_interval_s=60, reconnect_max_s=60,
        )  # fmt: skip
        async with httpx.AsyncClient(base_url=base, auth=signer, timeout=15) as agent, sim:
            await asyncio.wait_for(sim.booted.wait(), 10)
            plug = sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.2")))
            negotiated = await agent.post(
                "/v1/negotiations",
                json={"charge_point_id": "CP-1", "evse_id": 1, "energy_kwh": "10"},
            )
            assert negotiated.status_code == 201, negotiated.text
            negotiation = negotiated.json()
            accept = f"/v1/negotiations/{negotiation['negotiation_id']}/accept"
            terms = {"offer_id": negotiation["offer"]["offer_id"], "cap": "20.00"}
            challenged = await agent.post(accept, json=terms)
            challenge = parse_challenge(challenged.headers["www-authenticate"], ("authorize",))
            paid = await agent.post(
                accept, json=terms, headers={"Authorization": credential(challenge)}
            )
            assert paid.status_code == 201, paid.text
            await asyncio.wait_for(plug.started.wait(), 10)

            events = f"/v1/sessions/{paid.json()['session_id']}/events"
            async with agent.stream("GET", events) as stream:
                lines = stream.aiter_lines()
                assert (await anext(lines)).startswith("event: status")
                station.send_signal(signal.SIGTERM)
                sent = asyncio.get_running_loop().time()
                rest: list[str] = []
                async with asyncio.timeout(10):
                    try:
                        rest.extend([line async for line in lines])
                    except httpx.RemoteProtocolError:  # cut off at uvicorn's deadline
                        rest.append("<cut off>")
                    exit_code = await station.wait()
                stopped_s = asyncio.get_running_loop().time() - sent

    output = await asyncio.to_thread(log.read_text)
    assert exit_code == 0, output
    assert "station.stopped" in output
    assert ": station stopping" in rest
    assert not [marker for marker in CUT_OFF if marker in output], output
    # uvicorn's grace for open connections is 5 s; an open stream used to take all of it.
    assert stopped_s < 3, (stopped_s, output)
