"""A fleet of simulated charge points against one station (load, demos).

    result = await run_fleet(
        "ws://127.0.0.1:9000/ocpp",
        {"CP-1": "password-of-cp-1…", "CP-2": "…"},
        version="ocpp2.0.1", time_scale=3600, id_token="FLEET",
        battery=lambda: Battery(capacity_kwh=Decimal(40), soc=Decimal("0.5")),
    )
    result.sessions, result.energy_wh, result.seconds

Each charge point connects, boots, plugs one EV into EVSE 1 and charges it
(a local start with ``id_token``) until the battery is full; the fleet ends
when every session has ended or ``timeout_s`` has passed.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from simulators.battery import Battery
from simulators.charge_point import Plug, SimulatedChargePoint


@dataclass
class FleetResult:
    sessions: int = 0
    energy_wh: int = 0
    seconds: float = 0.0
    plugs: dict[str, Plug] = field(default_factory=dict)


async def run_fleet(
    url: str,
    credentials: dict[str, str | None],
    *,
    version: str = "ocpp2.0.1",
    time_scale: float = 3600,
    meter_interval_s: float = 60,
    id_token: str = "FLEET",
    battery: Callable[[], Battery] = Battery,
    connect_concurrency: int = 50,
    timeout_s: float = 120,
) -> FleetResult:
    result = FleetResult()
    gate = asyncio.Semaphore(connect_concurrency)
    began = time.perf_counter()

    async def one(cp_id: str, password: str | None) -> None:
        sim = SimulatedChargePoint(
            url, cp_id, password, version, time_scale=time_scale, meter_interval_s=meter_interval_s
        )
        async with sim:
            async with gate:
                await sim.booted.wait()
            plug = sim.plug_in(1, battery(), id_token=id_token)
            result.plugs[cp_id] = plug
            await plug.ended.wait()
        result.sessions += 1
        result.energy_wh += plug.energy_wh or 0

    async with asyncio.timeout(timeout_s), asyncio.TaskGroup() as tasks:
        for cp_id, password in credentials.items():
            tasks.create_task(one(cp_id, password))
    result.seconds = time.perf_counter() - began
    return result
