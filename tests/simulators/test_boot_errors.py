"""A simulator whose boot is answered with a CALLERROR keeps running and tries again."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime

from websockets.asyncio.server import ServerConnection, serve

from simulators.charge_point import SimulatedChargePoint


async def test_a_callerror_to_a_boot_status_does_not_end_the_simulator() -> None:
    """The station's database away: its StatusNotification answer is a CALLERROR. The
    simulator stays up (it took the whole fleet's TaskGroup down in the fault campaign)."""
    answered: list[str] = []

    async def station(ws: ServerConnection) -> None:
        async for frame in ws:
            _, unique_id, action, _payload = json.loads(frame)
            answered.append(action)
            if action == "StatusNotification" and answered.count(action) == 1:
                error = [4, unique_id, "GenericError", "the database is unavailable", {}]
                await ws.send(json.dumps(error))
            elif action == "BootNotification":
                now = datetime.now(UTC).isoformat()
                reply = {"currentTime": now, "interval": 300, "status": "Accepted"}
                await ws.send(json.dumps([3, unique_id, reply]))
            else:
                await ws.send(json.dumps([3, unique_id, {}]))

    async with serve(station, "127.0.0.1", 0, subprotocols=["ocpp2.0.1"]) as server:  # type: ignore[list-item]
        port = server.sockets[0].getsockname()[1]
        sim = SimulatedChargePoint(f"ws://127.0.0.1:{port}/ocpp", "CP-1", version="ocpp2.0.1")
        async with sim:
            await asyncio.wait_for(sim.booted.wait(), 10)
            sim.side_call(sim._status_payload(1, "Available"))
            while answered.count("StatusNotification") < 2:  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            assert sim._main is not None and not sim._main.done()
