"""Wiring: the `Station` holds every adapter and service and runs them.

`Station.run()` migrates the database, then serves the OCPP listener and the
HTTP API side by side in one task group until cancelled; `ready` is set once
both listen. `running_station()` does the same on free loopback ports for
tests and the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import uvicorn

from station.api.app import create_app
from station.logs import get_logger
from station.metrics import StationMetrics
from station.ocpp.server import CentralSystem
from station.services import kill_switch
from station.services.charging import ChargingService
from station.services.payments import Payments
from station.settings import Settings
from station.store.db import Database
from station.store.writer import GroupCommitWriter

_log = get_logger(__name__)


class Station:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.db = Database(settings.database_url)
        self.ready = asyncio.Event()
        self.metrics = StationMetrics()
        self.http_port: int | None = None
        self.ocpp_port: int | None = None
        # Charging: one group-commit writer for OCPP data; billing sets
        # `station.charging.listener` to hear about every committed change.
        self.writer = GroupCommitWriter(self.db)
        self.charging = ChargingService(
            self.db, self.writer, node_id=settings.node_id, free_vend=settings.ocpp_free_vend
        )
        self.central_system = CentralSystem(settings, self.db, self.charging, self.writer)
        # Payments (issue 3): negotiation, MPP authorisation, billing, settlement.
        self.payments = Payments(settings, self.db, lambda: self.central_system)
        self.charging.listener = self.payments.billing
        self.api = create_app(self)

    async def run(self) -> None:
        """Serve until cancelled. Safe to cancel: listeners close, the engine is disposed."""
        settings = self.settings
        await self.db.upgrade()
        http_socket = _bind(settings.http_host, settings.http_port)
        self.http_port = http_socket.getsockname()[1]
        config = uvicorn.Config(
            self.api, log_config=None, access_log=False, lifespan="off", timeout_graceful_shutdown=5
        )
        server = uvicorn.Server(config)
        server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        try:
            await self.charging.reset_node()
            ocpp_listening = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                tasks.create_task(self.writer.run())
                tasks.create_task(self.central_system.run(ocpp_listening))
                tasks.create_task(self.payments.run())
                tasks.create_task(kill_switch.watch(self))
                tasks.create_task(server.serve(sockets=[http_socket]))
                tasks.create_task(self._announce_ready(server, ocpp_listening))
        finally:
            self.ready.clear()
            http_socket.close()
            await self.db.dispose()

    async def _announce_ready(self, server: uvicorn.Server, ocpp_listening: asyncio.Event) -> None:
        # uvicorn exposes no started event, only this flag.
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await ocpp_listening.wait()
        self.ocpp_port = self.central_system.port
        self.ready.set()
        _log.info("station.ready", http_port=self.http_port, ocpp_port=self.ocpp_port)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


@asynccontextmanager
async def running_station(
    settings: Settings, start_timeout_s: float = 30
) -> AsyncIterator[Station]:
    """Run a station in this event loop until the block exits (tests, demo)."""
    station = Station(settings)
    task = asyncio.create_task(station.run(), name="station")
    try:
        async with asyncio.timeout(start_timeout_s):
            ready = asyncio.create_task(station.ready.wait())
            done, _ = await asyncio.wait({ready, task}, return_when=asyncio.FIRST_COMPLETED)
            if task in done:
                ready.cancel()
                task.result()  # raises what stopped the station
        yield station
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
