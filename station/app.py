"""Running the station: `Station` runs the parts `station.bootstrap.build` wired.

`Station.run()` migrates the database, then serves the OCPP listener and the
HTTP API side by side in one task group; `ready` is set once both listen.
`Station.stop()` shuts it down in order and `run()` returns:

1. stop accepting: uvicorn exits (in-flight requests finish) and the OCPP
   listener closes, each connection closed with 1001 (going away) once its
   current message is answered;
2. stop the background loops (settlement and reconciler, the kill-switch
   watch) after the work in flight;
3. stop the group-commit writer: the batch in flight and everything queued
   are committed.

Each stage has ``shutdown_timeout_s``; a stage that overruns is cancelled.
The station owns the process's signals (`StationServer` keeps uvicorn's
hands off them; ``chargepay serve`` maps SIGTERM/SIGINT to `stop()`).
`running_station()` runs one on free loopback ports for tests and the demo.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn

from station.api import http_server
from station.bootstrap import Parts, build
from station.cluster.node import ClusterNode
from station.logs import get_logger
from station.services import kill_switch
from station.settings import Settings

_log = get_logger(__name__)


class Station:
    """Runs the parts `station.bootstrap.build` wired (``Station(build(settings))``)."""

    def __init__(self, parts: Parts) -> None:
        self.parts = parts
        self.settings = parts.settings
        self.db = parts.db
        self.metrics = parts.metrics
        # One group-commit writer for OCPP data; billing hears every committed change.
        self.writer = parts.writer
        self.connections = parts.connections
        self.commands = parts.commands
        self.cluster = parts.cluster
        # Payments (issue 3): negotiation, MPP authorisation, billing, settlement.
        self.payments = parts.payments
        self.charging = parts.charging
        self.missing_ends = parts.missing_ends
        self.central_system = parts.central_system
        self.kill_switch = parts.kill_switch
        self.session_history = parts.session_history
        self.api = parts.api
        self.ready = parts.services.ready
        self._stop_requested = parts.services.stopping
        self.http_port: int | None = None
        self.ocpp_port: int | None = None

    @property
    def stopping(self) -> asyncio.Event:
        """Set once `stop()` is asked: long-lived responses (event streams) end on it."""
        return self._stop_requested

    def stop(self) -> None:
        """Ask `run()` to shut down gracefully and return. Idempotent; safe in a signal handler."""
        if not self._stop_requested.is_set():
            _log.info("station.stopping")
        self._stop_requested.set()

    async def run(self) -> None:
        """Serve until `stop()`, then shut down in order and return.

        Safe to cancel (everything is cut off where it stands; listeners close,
        the engine is disposed), but prefer `stop()`.
        """
        settings = self.settings
        await self.db.upgrade()
        http_socket = _bind(settings.http_host, settings.http_port)
        self.http_port = http_socket.getsockname()[1]
        config = uvicorn.Config(
            self.api,
            log_config=None,
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=max(1, int(settings.shutdown_timeout_s / 2)),
            # Slow and idle peers (station.api.http_server).
            http=http_server.protocol_class(settings.http_header_timeout_s),
            timeout_keep_alive=settings.http_keep_alive_s,
            # X-Forwarded-For believed from the operator's load balancers only (uvicorn's
            # default would believe it from any local process).
            proxy_headers=bool(settings.trusted_proxies),
            forwarded_allow_ips=settings.trusted_proxies or None,
        )
        server = StationServer(config)
        loop = asyncio.get_running_loop()
        accept_errors = http_server.AcceptErrors(metrics=self.metrics)
        accept_errors.install(loop)
        try:
            await self.charging.reset_node()
            if self.cluster is not None:
                await self.cluster.start()
            ocpp_listening = asyncio.Event()
            background_stop = asyncio.Event()
            async with asyncio.TaskGroup() as tasks:
                writer = tasks.create_task(self.writer.run(), name="writer")
                ocpp = tasks.create_task(self.central_system.run(ocpp_listening), name="ocpp")
                background = [
                    tasks.create_task(self.payments.run(), name="payments"),
                    tasks.create_task(
                        kill_switch.watch(self.kill_switch, until=background_stop), name="watch"
                    ),
                    tasks.create_task(self.missing_ends.run(until=background_stop), name="ends"),
                    tasks.create_task(
                        self.session_history.follow(self.payments.events, until=background_stop),
                        name="history",
                    ),
                ]
                if self.cluster is not None:
                    background += _cluster_tasks(tasks, self.cluster, background_stop)
                http = tasks.create_task(server.serve(sockets=[http_socket]), name="http")
                announce = tasks.create_task(self._announce_ready(server, ocpp_listening))
                await self._stop_requested.wait()

                self.ready.clear()
                announce.cancel()
                server.should_exit = True
                self.central_system.stop()
                await self._finish("accepting", http, ocpp)
                self.payments.stop()
                background_stop.set()
                await self._finish("background", *background)
                self.writer.stop()
                await self._finish("writer", writer)
            _log.info("station.stopped")
        finally:
            accept_errors.uninstall(loop)
            self.ready.clear()
            http_socket.close()
            if self.cluster is not None:
                await self.cluster.close()
            await self.db.dispose()

    async def _finish(self, stage: str, *tasks: asyncio.Task[Any]) -> None:
        """Wait for a shutdown stage's tasks; cancel those still running at the deadline."""
        _, late = await asyncio.wait(tasks, timeout=self.settings.shutdown_timeout_s)
        if late:
            _log.warning(
                "station.shutdown_overrun",
                stage=stage,
                tasks=sorted(t.get_name() for t in late),
                timeout_s=self.settings.shutdown_timeout_s,
            )
            for task in late:
                task.cancel()
            await asyncio.wait(late)

    async def _announce_ready(self, server: uvicorn.Server, ocpp_listening: asyncio.Event) -> None:
        # uvicorn exposes no started event, only this flag.
        while not server.started:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        await ocpp_listening.wait()
        self.ocpp_port = self.central_system.port
        self.ready.set()
        _log.info("station.ready", http_port=self.http_port, ocpp_port=self.ocpp_port)


def _cluster_tasks(
    tasks: asyncio.TaskGroup, node: ClusterNode, until: asyncio.Event
) -> list[asyncio.Task[Any]]:
    assert node.events is not None
    return [
        tasks.create_task(node.run(until), name="cluster"),
        tasks.create_task(node.events.run(until), name="cluster-events"),
    ]


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(1024)
    sock.setblocking(False)
    return sock


class StationServer(uvicorn.Server):
    """uvicorn without its signal handling: the station owns SIGINT/SIGTERM.

    uvicorn's own handlers would stop only the HTTP side and then re-raise the
    signal, killing the process with the OCPP side and the writer mid-flight.
    """

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def running_station(
    settings: Settings, start_timeout_s: float = 30, stop_timeout_s: float | None = None
) -> AsyncIterator[Station]:
    """Run a station in this event loop until the block exits (tests, demo).

    On exit the station is stopped gracefully (`Station.stop()`); it is
    cancelled only if it has not returned after ``stop_timeout_s`` (by
    default three shutdown stages' worth of ``shutdown_timeout_s``).
    """
    station = Station(build(settings))
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
        station.stop()
        timeout_s = stop_timeout_s or 3 * settings.shutdown_timeout_s + 1
        done, _ = await asyncio.wait({task}, timeout=timeout_s)
        if not done:
            _log.warning("station.stop_overrun", timeout_s=timeout_s)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
