"""`chargepay simulate`: simulated charge points of chosen OCPP versions against a station.

    chargepay simulate --charge-point CP-1 --password "$CP1_PASSWORD"      # one, waits for a car
    chargepay simulate --count 20 --version 1.6 --version 2.1 --register  # a fleet

Each charge point connects (HTTP Basic), boots, has an EV plugged into EVSE
1 and charges it when a session starts: by default on the station's remote
start (an agent paid for it), or at once with ``--id-token`` (the station
must allow it: ``CHARGEPAY_OCPP_FREE_VEND``). ``--register`` registers the
charge points first over the admin API with generated passwords. A live
table follows them; the command ends once each has finished ``--sessions``
sessions (0: run until interrupted), or on Ctrl-C / SIGTERM.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import signal
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console, Group
from rich.live import Live
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
from rich.table import Table

from station.cli_common import fail, load_settings

VERSIONS = {"1.6": "ocpp1.6", "2.0.1": "ocpp2.0.1", "2.1": "ocpp2.1"}


@dataclass
class SimRow:
    charge_point_id: str
    version: str
    state: str = "connecting"
    energy_wh: int = 0
    sessions: int = 0

    def as_json(self) -> dict[str, Any]:
        return {
            "charge_point_id": self.charge_point_id,
            "ocpp_version": self.version,
            "state": self.state,
            "sessions": self.sessions,
            "energy_kwh": str(Decimal(self.energy_wh) / 1000),
        }


def _table(rows: list[SimRow], progress: Progress) -> Group:
    table = Table("charge point", "OCPP", "state", "sessions", "kWh", title="chargepay simulate")
    for row in rows[:40]:
        table.add_row(
            row.charge_point_id,
            row.version.removeprefix("ocpp"),
            row.state,
            str(row.sessions),
            f"{Decimal(row.energy_wh) / 1000:.3f}",
        )
    if len(rows) > 40:
        table.add_row(f"… {len(rows) - 40} more", "", "", "", "")
    return Group(table, progress)


async def _one(
    url: str,
    row: SimRow,
    password: str | None,
    *,
    sessions: int,
    id_token: str | None,
    time_scale: float,
    battery_kwh: Decimal,
    soc: Decimal,
    done: asyncio.Queue[None],
) -> None:
    from simulators.battery import Battery
    from simulators.charge_point import SimulatedChargePoint

    sim = SimulatedChargePoint(
        url, row.charge_point_id, password, row.version, time_scale=time_scale, charger_max_kw=150
    )
    async with sim:
        while sessions == 0 or row.sessions < sessions:
            row.state = "connecting"
            await sim.booted.wait()
            row.state = "waiting for a session" if id_token is None else "starting"
            plug = sim.plug_in(1, Battery(capacity_kwh=battery_kwh, soc=soc), id_token=id_token)
            before = row.energy_wh
            await plug.started.wait()
            row.state = "charging"
            while not plug.ended.is_set():
                if plug.readings_wh:
                    row.energy_wh = before + plug.readings_wh[-1] - plug.readings_wh[0]
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(plug.ended.wait(), 0.25)
            row.energy_wh = before + (plug.energy_wh or 0)
            row.sessions += 1
            row.state = f"ended ({plug.stop_reason or 'done'})"
            done.put_nowait(None)


async def _register(station: str | None, ids: list[str]) -> dict[str, str]:
    from station.cli_operator import admin_request

    passwords: dict[str, str] = {}
    for cp in ids:
        password = secrets.token_urlsafe(18)[:24]
        body = {"charge_point_id": cp, "password": password}
        path = "/v1/admin/charge-points"
        await asyncio.to_thread(admin_request, station, "POST", path, json=body)
        passwords[cp] = password
    return passwords


def simulate(
    station: Annotated[
        str | None,
        typer.Option("--station", help="OCPP endpoint, default ws://127.0.0.1:<OCPP port>/ocpp"),
    ] = None,
    charge_point: Annotated[
        list[str] | None, typer.Option("--charge-point", help="An id (repeat for more).")
    ] = None,
    count: Annotated[int, typer.Option(min=1, max=10_000, help="Without --charge-point.")] = 1,
    prefix: Annotated[str, typer.Option(help="Ids for --count: PREFIX1, PREFIX2, …")] = "SIM-",
    version: Annotated[
        list[str] | None, typer.Option("--version", help="1.6, 2.0.1 or 2.1 (repeat: cycled).")
    ] = None,
    password: Annotated[
        str | None, typer.Option(help="The charge points' password (HTTP Basic).")
    ] = None,
    register: Annotated[
        bool, typer.Option("--register", help="Register them first (admin API).")
    ] = False,
    admin_url: Annotated[
        str | None, typer.Option("--admin-url", help="For --register (CHARGEPAY_STATION_URL).")
    ] = None,
    id_token: Annotated[
        str | None, typer.Option("--id-token", help="Start at once with this tag.")
    ] = None,
    sessions: Annotated[int, typer.Option(min=0, help="Per charge point; 0: until stopped.")] = 1,
    time_scale: Annotated[float, typer.Option(min=1, help="Simulated time runs this fast.")] = 600,
    battery_kwh: Annotated[str, typer.Option(help="Each EV's battery.")] = "60",
    soc: Annotated[str, typer.Option(help="Its state of charge when plugged in, 0–1.")] = "0.2",
    as_json: Annotated[bool, typer.Option("--json", help="A JSON report at the end.")] = False,
) -> None:
    """A fleet of simulated charge points against a running station, with a live table."""
    settings = load_settings()
    url = (station or f"ws://127.0.0.1:{settings.ocpp_port}/ocpp").rstrip("/")
    if not url.startswith(("ws://", "wss://")):
        fail(f"--station {url!r} is not a WebSocket URL; give ws://HOST:PORT/ocpp")
    chosen = version or ["2.0.1"]
    unknown = [v for v in chosen if v not in VERSIONS]
    if unknown:
        fail(f"--version {unknown[0]!r} is not an OCPP version; use 1.6, 2.0.1 or 2.1")
    try:
        capacity, start_soc = Decimal(battery_kwh), Decimal(soc)
    except ArithmeticError:
        fail("--battery-kwh and --soc take decimal numbers, e.g. 60 and 0.2")
    if not (capacity > 0 and 0 <= start_soc < 1):
        fail("--battery-kwh must be more than 0 and --soc from 0 to below 1")
    ids = list(charge_point or [f"{prefix}{i}" for i in range(1, count + 1)])
    if not register and password is None:
        fail("give the charge points' --password, or --register them first")
    rows = [SimRow(cp, VERSIONS[chosen[i % len(chosen)]]) for i, cp in enumerate(ids)]
    console = Console(stderr=as_json)

    async def main() -> None:
        passwords = await _register(admin_url, ids) if register else dict.fromkeys(ids, password)
        done: asyncio.Queue[None] = asyncio.Queue()
        progress = Progress(
            TextColumn("sessions"), BarColumn(), MofNCompleteColumn(), console=console
        )
        total = len(rows) * sessions if sessions else None
        task = progress.add_task("sessions", total=total)
        loop = asyncio.get_running_loop()
        runner = asyncio.current_task()
        if runner is not None:
            loop.add_signal_handler(signal.SIGTERM, runner.cancel)
        with Live(_table(rows, progress), console=console, refresh_per_second=4) as live:
            workers = [
                asyncio.create_task(
                    _one(
                        url,
                        row,
                        passwords[row.charge_point_id],
                        sessions=sessions,
                        id_token=id_token,
                        time_scale=time_scale,
                        battery_kwh=capacity,
                        soc=start_soc,
                        done=done,
                    )
                )
                for row in rows
            ]

            async def follow() -> None:
                while True:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(done.get(), 0.25)
                        progress.advance(task)
                    live.update(_table(rows, progress))

            follower = asyncio.create_task(follow())
            try:
                await asyncio.gather(*workers)
            finally:
                for pending in (*workers, follower):
                    pending.cancel()
                await asyncio.gather(*workers, follower, return_exceptions=True)
                live.update(_table(rows, progress))

    with contextlib.suppress(KeyboardInterrupt, asyncio.CancelledError):
        asyncio.run(main())
    if as_json:
        typer.echo(json.dumps([row.as_json() for row in rows]))
