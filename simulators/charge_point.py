"""A simulated charge point for OCPP 1.6, 2.0.1 and 2.1, on the real `ocpp` library.

Usage::

    sim = SimulatedChargePoint(
        "ws://127.0.0.1:9000/ocpp", "CP-1", password="…16-40 chars…",
        version="ocpp2.0.1", time_scale=600, meter_interval_s=60,
    )
    async with sim:                                   # connects, boots, reconnects
        plug = sim.plug_in(1, Battery(capacity_kwh=60, soc=Decimal("0.3")))
        # … the station sends RemoteStart / RequestStartTransaction with an id token,
        # or start locally:  plug = sim.plug_in(1, battery, id_token="TAG-1")
        await plug.ended.wait()                       # the battery is full, or stopped
        plug.meter_start_wh, plug.meter_stop_wh, plug.energy_wh, plug.transaction_id

What it does: BootNotification, StatusNotification per EVSE, Heartbeat; answers
RemoteStart/RemoteStop (1.6), RequestStart/RequestStop, CostUpdated,
TriggerMessage and GetTransactionStatus (2.x); Authorize on a local start; meter values (energy
register in Wh, power, SoC) every ``meter_interval_s`` of *simulated* time,
from the battery's CC-CV curve; 2.1: stops by itself when the running cost it
hears (``totalCost``) reaches the ``transactionLimit.maxCost`` it was given.

Simulated time runs ``time_scale`` times faster than the wall clock, so a
30 kWh session takes a second or two. Transaction messages go through an
outbox: while the station is unreachable they queue (2.x marks them
``offline``) and are delivered in order after reconnecting (exponential
back-off). `go_offline()` / `go_online()` drop and restore the link.

Every task has an owner: `run()` (or ``async with``) runs the connection,
the sender, the heartbeat and one task per plugged-in EVSE in one TaskGroup.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ocpp import v16, v21, v201
from ocpp.exceptions import OCPPError
from ocpp.routing import on
from ocpp.v16 import enums as enums16
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from simulators.battery import Battery

_log = logging.getLogger(__name__)
ENERGY = "Energy.Active.Import.Register"


class SimClock:
    """Simulated time: ``scale`` simulated seconds per wall-clock second.

    While `held` (a transaction message waiting for the station's answer) it runs at
    wall speed instead: a station answers in milliseconds, and at 600x a 50 ms answer
    would otherwise be 30 simulated seconds of charging the station has not heard of,
    so that a stop or a limit sent in answer to a reading would land samples late.
    Holding keeps the station's latency real latency; offline, time runs at full scale.
    """

    def __init__(self, scale: float = 1.0, start: datetime | None = None) -> None:
        self.scale = scale
        self.start = start or datetime.now(UTC)
        self._t0 = asyncio.get_running_loop().time() if _loop_running() else None
        self._base_s = 0.0
        self._held = 0

    def _elapsed_s(self) -> float:
        loop = asyncio.get_running_loop()
        if self._t0 is None:
            self._t0 = loop.time()
        rate = 1.0 if self._held else self.scale
        return self._base_s + (loop.time() - self._t0) * rate

    def _rebase(self) -> None:
        self._base_s = self._elapsed_s()
        self._t0 = asyncio.get_running_loop().time()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """Simulated time at wall speed for the duration."""
        self._rebase()
        self._held += 1
        try:
            yield
        finally:
            self._rebase()
            self._held -= 1

    def now(self) -> datetime:
        return self.start + timedelta(seconds=self._elapsed_s())

    def iso(self) -> str:
        return self.now().isoformat(timespec="milliseconds").replace("+00:00", "Z")

    async def sleep(self, simulated_s: float) -> None:
        await asyncio.sleep(simulated_s / self.scale)


def _loop_running() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


@dataclass
class Plug:
    """One EV plugged into one EVSE, and what became of its transaction."""

    evse_id: int
    battery: Battery
    id_token: str | None = None
    remote_start_id: int | None = None
    transaction_id: int | str | None = None  # 1.6: the station's integer; 2.x: our ref
    meter_start_wh: int | None = None
    meter_stop_wh: int | None = None
    stop_reason: str | None = None
    total_cost: Decimal | None = None
    max_cost: Decimal | None = None
    accepted: bool | None = None
    # Every energy register value this transaction reported, in order (Wh).
    readings_wh: list[int] = field(default_factory=list)
    started: asyncio.Event = field(default_factory=asyncio.Event)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    _go: asyncio.Event = field(default_factory=asyncio.Event)
    _stop: str | None = None
    _start_acknowledged: asyncio.Event = field(default_factory=asyncio.Event)
    # Set when something the charging loop must act on at once has changed
    # (a stop, a refused token, a new cost or cost limit, a charging limit).
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    # The TxProfile the station set (SetChargingProfile): from `schedule_start`, each
    # (offset in seconds, limit in W) holds until the next; the last one for good.
    schedule_start: datetime | None = None
    schedule: list[tuple[float, Decimal]] = field(default_factory=list)
    # Every charging limit the station set, as received (W of its first period).
    limits_w: list[Decimal] = field(default_factory=list)

    def nudge(self) -> None:
        self._wake.set()

    def limit_kw(self, at: datetime) -> Decimal | None:
        """The charging limit in force at `at` (kW), if the station set one."""
        if self.schedule_start is None or at < self.schedule_start:
            return None
        offset = (at - self.schedule_start).total_seconds()
        limit = None
        for start, watts in self.schedule:
            if start <= offset:
                limit = watts / 1000
        return limit

    def next_limit_change_s(self, at: datetime) -> float | None:
        """Simulated seconds from `at` to the next period of the schedule, if any."""
        if self.schedule_start is None:
            return None
        offset = (at - self.schedule_start).total_seconds()
        later = [start - offset for start, _ in self.schedule if start > offset]
        return min(later) if later else None

    @property
    def energy_wh(self) -> int | None:
        if self.meter_start_wh is None or self.meter_stop_wh is None:
            return None
        return self.meter_stop_wh - self.meter_start_wh


@dataclass
class _Outgoing:
    build: Callable[[], Any]  # the payload, built when sent (1.6 ids arrive late)
    on_result: Callable[[Any], None] | None = None
    plug: Plug | None = None  # the transaction it belongs to


class SimulatedChargePoint:
    def __init__(
        self,
        url: str,
        charge_point_id: str,
        password: str | None = None,
        version: str = "ocpp2.0.1",
        *,
        time_scale: float = 1.0,
        meter_interval_s: float = 60.0,
        charger_max_kw: Decimal | int = Decimal(50),
        evse_count: int = 1,
        meter_start_wh: int = 0,
        call_timeout_s: float = 10.0,
        reconnect_max_s: float = 2.0,
        ssl: Any = None,
        vendor: str = "chargepay",
        model: str = "sim",
    ) -> None:
        if version not in ("ocpp1.6", "ocpp2.0.1", "ocpp2.1"):
            raise ValueError(f"unknown OCPP version {version!r}")
        self.url = url.rstrip("/")
        self.charge_point_id = charge_point_id
        self.password = password
        self.version = version
        self.time_scale = time_scale
        self.meter_interval_s = meter_interval_s
        self.charger_max_kw = Decimal(charger_max_kw)
        self.evse_count = evse_count
        self.call_timeout_s = call_timeout_s
        self.reconnect_max_s = reconnect_max_s
        self.ssl = ssl
        self.vendor, self.model = vendor, model
        self.meter_wh = dict.fromkeys(range(1, evse_count + 1), meter_start_wh)
        self.plugs: dict[int, Plug] = {}
        self.connected = asyncio.Event()
        self.booted = asyncio.Event()
        self.connections = 0
        self.refused: Exception | None = None  # the last handshake refusal
        self.heartbeat_interval_s: float = 300
        self.errors: list[str] = []
        # A faulty charge point: the next `ignore_stops` remote stops are answered Accepted
        # and ignored. `stops_received` counts every remote stop that arrived.
        self.ignore_stops = 0
        self.stops_received = 0
        self._online = asyncio.Event()
        self._online.set()
        self._client: Any = None
        self._outbox: deque[_Outgoing] = deque()
        self._outbox_ready = asyncio.Event()
        self._side: asyncio.Queue[Any] = asyncio.Queue()  # non-transaction calls
        self._seq = itertools.count()
        self._tx_numbers = itertools.count(1)
        self._tasks: asyncio.TaskGroup | None = None
        self._main: asyncio.Task[None] | None = None
        self.clock: SimClock | None = None

    # --- lifecycle ---------------------------------------------------------------------

    async def __aenter__(self) -> SimulatedChargePoint:
        self._main = asyncio.create_task(self.run(), name=f"sim-{self.charge_point_id}")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._main is not None:
            self._main.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._main

    async def run(self) -> None:
        """Connect (and reconnect), send, meter; until cancelled."""
        self.clock = SimClock(self.time_scale)
        async with asyncio.TaskGroup() as tasks:
            self._tasks = tasks
            tasks.create_task(self._connection_loop())
            tasks.create_task(self._sender())
            tasks.create_task(self._heartbeats())
            for plug in self.plugs.values():
                tasks.create_task(self._session(plug))

    def plug_in(
        self, evse_id: int = 1, battery: Battery | None = None, *, id_token: str | None = None
    ) -> Plug:
        """Plug an EV in; with ``id_token`` it starts at once, else on a remote start."""
        if evse_id in self.plugs and not self.plugs[evse_id].ended.is_set():
            raise ValueError(f"EVSE {evse_id} is busy")
        plug = Plug(evse_id, battery or Battery(), id_token=id_token)
        if id_token is not None:
            plug._go.set()
        self.plugs[evse_id] = plug
        if self._tasks is not None:
            self._tasks.create_task(self._session(plug))
        self.side_call(self._status_payload(evse_id, "Preparing"))
        return plug

    def unplug(self, evse_id: int = 1) -> None:
        """An EV that was never started leaves (a started one is stopped with `stop`)."""
        plug = self.plugs.get(evse_id)
        if plug is not None and not plug._go.is_set():
            del self.plugs[evse_id]
            plug.ended.set()
            plug._go.set()
            self.side_call(self._status_payload(evse_id, "Available"))

    def stop(self, evse_id: int = 1, reason: str = "Local") -> None:
        plug = self.plugs.get(evse_id)
        if plug is not None:
            plug._stop = reason
            plug.nudge()

    def go_offline(self) -> None:
        """Drop the connection and stay away until `go_online()`.

        Nothing more is sent from this moment (the link is gone before its close is):
        what is queued from now on waits for the reconnection.
        """
        self._online.clear()
        self.booted.clear()
        if self._client is not None:
            self._client_closer()

    def go_online(self) -> None:
        self._online.set()

    @property
    def pending(self) -> int:
        """Transaction messages waiting to be delivered."""
        return len(self._outbox)

    # --- the connection ----------------------------------------------------------------

    def _client_closer(self) -> None:
        ws = self._client._connection if self._client is not None else None
        if ws is not None and self._tasks is not None:
            self._tasks.create_task(ws.close(1001, "going offline"))

    async def _connection_loop(self) -> None:
        backoff = 0.05
        headers = {}
        if self.password is not None:
            token = base64.b64encode(f"{self.charge_point_id}:{self.password}".encode()).decode()
            headers["Authorization"] = f"Basic {token}"
        while True:
            await self._online.wait()
            try:
                async with connect(
                    f"{self.url}/{self.charge_point_id}",
                    subprotocols=[self.version],  # type: ignore[list-item]
                    additional_headers=headers,
                    open_timeout=self.call_timeout_s,
                    ssl=self.ssl,
                    max_size=None,
                ) as ws:
                    backoff = 0.05
                    self.refused = None
                    await self._serve(ws)
            except asyncio.CancelledError:
                raise
            except InvalidStatus as exc:
                self.refused = exc
                _log.info("sim.refused %s %s", self.charge_point_id, exc)
            except (OSError, InvalidHandshake, ConnectionClosed, TimeoutError) as exc:
                _log.debug("sim.connect_failed %s %r", self.charge_point_id, exc)
            except OCPPError as exc:  # the boot refused (a CALLERROR): try again later
                _log.info("sim.boot_failed %s %s", self.charge_point_id, exc)
            self.connected.clear()
            self._client = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, self.reconnect_max_s)

    async def _serve(self, ws: Any) -> None:
        client_class: Any = {"ocpp1.6": _Client16, "ocpp2.0.1": _Client201, "ocpp2.1": _Client21}[
            self.version
        ]
        client = client_class(self.charge_point_id, ws, response_timeout=self.call_timeout_s)
        client.sim = self
        self._client = client
        self.connections += 1
        receive = asyncio.create_task(client.start())
        try:
            self.connected.set()
            await self._boot(client)
            self._outbox_ready.set()
            with contextlib.suppress(ConnectionClosed):
                await receive
        finally:
            self.connected.clear()
            self.booted.clear()
            receive.cancel()
            with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
                await receive

    async def _boot(self, client: Any) -> None:
        if self.version == "ocpp1.6":
            boot = v16.call.BootNotification(
                charge_point_vendor=self.vendor, charge_point_model=self.model
            )
        else:
            module = v201 if self.version == "ocpp2.0.1" else v21
            boot = module.call.BootNotification(
                charging_station={"model": self.model, "vendor_name": self.vendor},
                reason="PowerUp",
            )
        result = await self._call(client, boot)
        self.heartbeat_interval_s = float(result.interval or 300)
        for evse_id in self.meter_wh:
            plug = self.plugs.get(evse_id)
            busy = plug is not None and not plug.ended.is_set()
            # Informational: a CALLERROR to it (the station's database away) is no reason
            # to give the connection up.
            with contextlib.suppress(OCPPError):
                await self._call(
                    client,
                    self._status_payload(evse_id, "Occupied" if busy else "Available"),
                )
        self.booted.set()

    def _status_payload(self, evse_id: int, status: str) -> Any:
        clock = self.clock
        stamp = clock.iso() if clock else datetime.now(UTC).isoformat()
        if self.version == "ocpp1.6":
            v16_status = {"Occupied": "Charging", "Preparing": "Preparing"}.get(status, status)
            return v16.call.StatusNotification(
                connector_id=evse_id, error_code="NoError", status=v16_status, timestamp=stamp
            )
        module = v201 if self.version == "ocpp2.0.1" else v21
        status = "Occupied" if status == "Preparing" else status
        return module.call.StatusNotification(
            timestamp=stamp, connector_status=status, evse_id=evse_id, connector_id=1
        )

    async def _heartbeats(self) -> None:
        assert self.clock is not None
        while True:
            await self.clock.sleep(self.heartbeat_interval_s)
            if self.booted.is_set():
                module = {"ocpp1.6": v16, "ocpp2.0.1": v201, "ocpp2.1": v21}[self.version]
                self.side_call(module.call.Heartbeat())

    async def _sender(self) -> None:
        """Deliver side calls when connected, and the outbox in order, retrying."""
        while True:
            await self.booted.wait()
            client = self._client
            if client is None:
                await asyncio.sleep(0.01)
                continue
            while not self._side.empty() and self.booted.is_set():
                payload = self._side.get_nowait()
                with contextlib.suppress(OCPPError, TimeoutError, ConnectionClosed):
                    await self._call(client, payload)
            if not self._outbox:
                if not self._side.empty():
                    continue
                self._outbox_ready.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(0.05):
                        await self._outbox_ready.wait()
                continue
            item = self._outbox[0]
            try:
                with self.clock.held() if self.clock else contextlib.nullcontext():
                    result = await self._call(client, item.build())
            except (ConnectionClosed, TimeoutError):
                await asyncio.sleep(0.01)  # reconnect, then retry the same message
                continue
            except OCPPError as exc:
                self.errors.append(f"{exc.code}: {exc.description}")
                _log.warning("sim.call_error %s %s", self.charge_point_id, exc)
                result = None
            self._outbox.popleft()
            if item.on_result is not None and result is not None:
                item.on_result(result)

    async def _call(self, client: Any, payload: Any) -> Any:
        """``client.call`` that fails at once when the connection drops.

        (The library would wait for its response timeout instead.)
        """
        call = asyncio.create_task(client.call(payload, suppress=False))
        closed = asyncio.create_task(client._connection.wait_closed())
        try:
            await asyncio.wait({call, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (call, closed):
                task.cancel()
            await asyncio.gather(call, closed, return_exceptions=True)
        if call.cancelled():
            raise ConnectionClosed(None, None)
        return call.result()

    def side_call(self, payload: Any) -> None:
        """Queue a call that is not part of a transaction (dropped while offline)."""
        self._side.put_nowait(payload)
        self._outbox_ready.set()

    def _enqueue(
        self,
        build: Callable[[], Any],
        on_result: Callable[[Any], None] | None,
        plug: Plug | None = None,
    ) -> None:
        self._outbox.append(_Outgoing(build, on_result, plug))
        self._outbox_ready.set()

    # --- one EV session ----------------------------------------------------------------

    async def _session(self, plug: Plug) -> None:
        assert self.clock is not None
        clock = self.clock
        await plug._go.wait()
        if plug.ended.is_set():  # unplugged before it started
            return
        evse = plug.evse_id
        if plug.id_token is not None and plug.remote_start_id is None and self.booted.is_set():
            plug.accepted = await self._authorize(plug.id_token)
            if not plug.accepted:
                plug.stop_reason = "DeAuthorized"
                plug.ended.set()
                return
        plug.meter_start_wh = self.meter_wh[evse]
        ref = f"{evse}-{next(self._tx_numbers)}-{uuid.uuid4().hex[:24]}"  # ≤ 36 characters
        if self.version != "ocpp1.6":
            plug.transaction_id = ref
        self._enqueue_start(plug, clock.iso())
        plug.started.set()
        fraction = Decimal(0)
        since_sample = 0.0
        while True:
            # A real charger stops delivering when told, not at its next sample:
            # wake early on a nudge and deliver only for the time that passed.
            # A charging limit holds from its period's start: wake there too.
            began = clock.now()
            span = self.meter_interval_s - since_sample
            change = plug.next_limit_change_s(began)
            if change is not None:
                span = min(span, max(change, 0.0))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(plug._wake.wait(), span / clock.scale)
            plug._wake.clear()
            elapsed = (clock.now() - began).total_seconds()
            elapsed = min(elapsed, span)
            since_sample += elapsed
            taken = plug.battery.step(elapsed, self._max_kw(plug, began)) + fraction
            whole = int(taken)
            fraction = taken - whole
            self.meter_wh[evse] += whole
            reason = self._stop_reason(plug)
            if reason is not None:
                break
            if since_sample >= self.meter_interval_s:
                since_sample = 0.0
                self._enqueue_meter(plug, clock.iso())
        plug.meter_stop_wh = self.meter_wh[evse]
        plug.stop_reason = reason
        done = asyncio.Event()
        self._enqueue_end(plug, clock.iso(), reason, done)
        await done.wait()
        self.side_call(self._status_payload(evse, "Available"))
        plug.ended.set()

    def _stop_reason(self, plug: Plug) -> str | None:
        if plug._stop is not None:
            return plug._stop
        if plug.battery.full:
            return "EVDisconnected" if self.version == "ocpp1.6" else "StoppedByEV"
        if (
            self.version == "ocpp2.1"
            and plug.max_cost is not None
            and plug.total_cost is not None
            and plug.total_cost >= plug.max_cost
        ):
            return "CostLimitReached"
        if plug.accepted is False:
            return "DeAuthorized"
        return None

    async def _authorize(self, id_token: str) -> bool:
        client = self._client
        try:
            if self.version == "ocpp1.6":
                result = await self._call(client, v16.call.Authorize(id_tag=id_token))
                return bool(result.id_tag_info["status"] == "Accepted")
            module = v201 if self.version == "ocpp2.0.1" else v21
            result = await self._call(
                client,
                module.call.Authorize(id_token={"id_token": id_token, "type": "ISO14443"}),
            )
            return bool(result.id_token_info["status"] == "Accepted")
        except (ConnectionClosed, TimeoutError, OCPPError, AttributeError):
            return True  # offline: the local authorisation cache says yes

    def _register(self, evse: int, context: str, stamp: str, power_w: Decimal) -> list[Any]:
        wh = self.meter_wh[evse]
        plug = self.plugs.get(evse)
        if plug is not None:
            plug.readings_wh.append(wh)
        if self.version == "ocpp1.6":
            values: list[dict[str, Any]] = [
                {"value": str(wh), "context": context, "measurand": ENERGY, "unit": "Wh"},
                {
                    "value": str(int(power_w)),
                    "context": context,
                    "measurand": "Power.Active.Import",
                    "unit": "W",
                },
            ]
            return [{"timestamp": stamp, "sampledValue": values}]
        values_2x: list[dict[str, Any]] = [
            {
                "value": wh,
                "context": context,
                "measurand": ENERGY,
                "unitOfMeasure": {"unit": "Wh"},
            },
            {
                "value": int(power_w),
                "context": context,
                "measurand": "Power.Active.Import",
                "unitOfMeasure": {"unit": "W"},
            },
        ]
        return [{"timestamp": stamp, "sampledValue": values_2x}]

    def _max_kw(self, plug: Plug, at: datetime) -> Decimal:
        limit = plug.limit_kw(at)
        return self.charger_max_kw if limit is None else min(self.charger_max_kw, limit)

    def _power_w(self, plug: Plug) -> Decimal:
        at = self.clock.now() if self.clock else datetime.now(UTC)
        max_kw = self._max_kw(plug, at)
        return plug.battery.power_kw(max_kw) * 1000 if max_kw > 0 else Decimal(0)

    def _enqueue_start(self, plug: Plug, stamp: str) -> None:
        evse = plug.evse_id
        meter_start = self.meter_wh[evse]
        if self.version == "ocpp1.6":

            def build() -> Any:
                return v16.call.StartTransaction(
                    connector_id=evse,
                    id_tag=plug.id_token or "SIM",
                    meter_start=meter_start,
                    timestamp=stamp,
                )

            def on_result(result: Any) -> None:
                plug.transaction_id = result.transaction_id
                plug.accepted = result.id_tag_info["status"] == "Accepted"
                plug._start_acknowledged.set()
                plug.nudge()

            self._enqueue(build, on_result, plug)
            return
        sampled = self._register(evse, "Transaction.Begin", stamp, Decimal(0))
        self._enqueue_event(plug, "Started", stamp, sampled, trigger="Authorized")

    def _enqueue_meter(self, plug: Plug, stamp: str) -> None:
        evse = plug.evse_id
        sampled = self._register(evse, "Sample.Periodic", stamp, self._power_w(plug))
        if self.version == "ocpp1.6":

            def build() -> Any:
                return v16.call.MeterValues(
                    connector_id=evse, transaction_id=plug.transaction_id, meter_value=sampled
                )

            self._enqueue(build, None, plug)
            return
        self._enqueue_event(plug, "Updated", stamp, sampled, trigger="MeterValuePeriodic")

    def _enqueue_end(self, plug: Plug, stamp: str, reason: str, done: asyncio.Event) -> None:
        evse = plug.evse_id
        sampled = self._register(evse, "Transaction.End", stamp, Decimal(0))
        meter_stop = self.meter_wh[evse]
        if self.version == "ocpp1.6":

            def build() -> Any:
                return v16.call.StopTransaction(
                    meter_stop=meter_stop,
                    timestamp=stamp,
                    transaction_id=plug.transaction_id,
                    reason=reason if reason != "CostLimitReached" else "Other",
                    id_tag=plug.id_token,
                    transaction_data=sampled,
                )

            self._enqueue(build, lambda _result: done.set(), plug)
            return
        trigger = {
            "Remote": "RemoteStop",
            "CostLimitReached": "CostLimitReached",
            "DeAuthorized": "Deauthorized",
        }.get(
            reason,
            "EVDeparted" if reason in ("StoppedByEV", "EVDisconnected") else "StopAuthorized",
        )
        wire_reason = "Other" if reason == "CostLimitReached" else reason
        self._enqueue_event(
            plug, "Ended", stamp, sampled, trigger=trigger, reason=wire_reason, done=done
        )

    def _enqueue_event(
        self,
        plug: Plug,
        kind: str,
        stamp: str,
        meter_value: list[Any],
        *,
        trigger: str,
        reason: str | None = None,
        done: asyncio.Event | None = None,
    ) -> None:
        module = v201 if self.version == "ocpp2.0.1" else v21
        seq_no = next(self._seq)
        offline = not self.booted.is_set()
        info: dict[str, Any] = {"transactionId": plug.transaction_id}
        if kind == "Started" and plug.remote_start_id is not None:
            info["remoteStartId"] = plug.remote_start_id
        if reason is not None:
            info["stoppedReason"] = reason
        token = None
        if kind == "Started" and plug.id_token is not None:
            token_type = "Central" if plug.remote_start_id is not None else "ISO14443"
            token = {"idToken": plug.id_token, "type": token_type}
        if kind == "Started" and plug.remote_start_id is not None:
            trigger = "RemoteStart"

        def build() -> Any:
            return module.call.TransactionEvent(
                event_type=kind,
                timestamp=stamp,
                trigger_reason=trigger,
                seq_no=seq_no,
                transaction_info=info,
                evse={"id": plug.evse_id, "connectorId": 1},
                id_token=token,
                meter_value=meter_value,
                offline=offline,
            )

        def on_result(result: Any) -> None:
            if result.total_cost is not None:
                plug.total_cost = Decimal(str(result.total_cost))
            info_ = result.id_token_info
            if info_ is not None:
                plug.accepted = info_.get("status") == "Accepted"
            limit = getattr(result, "transaction_limit", None)
            if limit and limit.get("max_cost") is not None:
                plug.max_cost = Decimal(str(limit["max_cost"]))
            plug.nudge()
            if done is not None:
                done.set()

        self._enqueue(build, on_result, plug)

    # --- what the station asks ---------------------------------------------------------

    def remote_start(
        self, id_token: str, evse_id: int | None, remote_start_id: int | None = None
    ) -> bool:
        candidates = [evse_id] if evse_id else list(self.plugs)
        for evse in candidates:
            plug = self.plugs.get(evse) if evse is not None else None
            if plug is not None and not plug._go.is_set():
                plug.id_token = id_token
                plug.remote_start_id = remote_start_id
                plug._go.set()
                return True
        return False

    def remote_stop(self, transaction_id: int | str) -> bool:
        self.stops_received += 1
        if self.ignore_stops > 0:
            self.ignore_stops -= 1
            return True
        for plug in self.plugs.values():
            if plug.transaction_id == transaction_id and not plug.ended.is_set():
                plug._stop = "Remote"
                plug.nudge()
                return True
        return False

    def set_charging_profile(
        self, transaction_id: int | str | None, profile: dict[str, Any]
    ) -> bool:
        """A TxProfile for a running transaction (periods in W; Absolute or Relative)."""
        plugs = [
            p for p in self.plugs.values()
            if p.transaction_id == transaction_id and not p.ended.is_set()
        ]  # fmt: skip
        schedule = profile.get("charging_schedule")
        if isinstance(schedule, list):  # 2.x: a list of schedules, the first one applies
            schedule = schedule[0] if schedule else None
        if (
            not plugs
            or profile.get("charging_profile_purpose") != "TxProfile"
            or not isinstance(schedule, dict)
            or schedule.get("charging_rate_unit") != "W"
        ):
            return False
        periods = sorted(
            (float(p["start_period"]), Decimal(str(p["limit"])))
            for p in schedule.get("charging_schedule_period", [])
        )
        if not periods:
            return False
        assert self.clock is not None
        start = self.clock.now()
        if profile.get("charging_profile_kind") == "Absolute" and schedule.get("start_schedule"):
            start = datetime.fromisoformat(str(schedule["start_schedule"]).replace("Z", "+00:00"))
        plug = plugs[0]
        plug.schedule_start, plug.schedule = start, periods
        plug.limits_w.append(periods[0][1])
        plug.nudge()
        return True

    def transaction_status(self, transaction_id: str | None) -> tuple[bool | None, bool]:
        """GetTransactionStatus (2.x): (ongoing, messages in queue), as a charge point has it.

        With a transaction id: whether that transaction still runs here (False when it
        has ended or is unknown) and whether any of its messages wait to be delivered
        (one sent and not yet answered included). Without: ongoing is not given, and
        the queue is every transaction's.
        """
        if transaction_id is None:
            return None, bool(self._outbox)
        queued = any(
            item.plug is not None and item.plug.transaction_id == transaction_id
            for item in self._outbox
        )
        ongoing = any(
            plug.transaction_id == transaction_id and plug.meter_stop_wh is None
            for plug in self.plugs.values()
        )
        return ongoing, queued

    def cost_updated(self, transaction_id: str, total_cost: float) -> None:
        for plug in self.plugs.values():
            if plug.transaction_id == transaction_id:
                plug.total_cost = Decimal(str(total_cost))
                plug.nudge()


class _Client16(v16.ChargePoint):
    sim: SimulatedChargePoint

    @on(enums16.Action.remote_start_transaction)
    async def on_remote_start(self, id_tag: str, connector_id: int | None = None, **_: Any) -> Any:
        ok = self.sim.remote_start(id_tag, connector_id)
        return v16.call_result.RemoteStartTransaction(status="Accepted" if ok else "Rejected")

    @on(enums16.Action.remote_stop_transaction)
    async def on_remote_stop(self, transaction_id: int, **_: Any) -> Any:
        ok = self.sim.remote_stop(transaction_id)
        return v16.call_result.RemoteStopTransaction(status="Accepted" if ok else "Rejected")

    @on(enums16.Action.trigger_message)
    async def on_trigger(self, requested_message: str, **_: Any) -> Any:
        if requested_message == "Heartbeat":
            self.sim.side_call(v16.call.Heartbeat())
            return v16.call_result.TriggerMessage(status="Accepted")
        return v16.call_result.TriggerMessage(status="NotImplemented")

    @on(enums16.Action.set_charging_profile)
    async def on_set_charging_profile(
        self, connector_id: int, cs_charging_profiles: dict[str, Any], **_: Any
    ) -> Any:
        ok = self.sim.set_charging_profile(
            cs_charging_profiles.get("transaction_id"), cs_charging_profiles
        )
        return v16.call_result.SetChargingProfile(status="Accepted" if ok else "Rejected")


class _Client201(v201.ChargePoint):
    sim: SimulatedChargePoint
    _module: Any = v201

    @on("RequestStartTransaction")
    async def on_request_start(
        self, id_token: dict[str, Any], remote_start_id: int, evse_id: int | None = None, **_: Any
    ) -> Any:
        ok = self.sim.remote_start(id_token["id_token"], evse_id, remote_start_id)
        return self._module.call_result.RequestStartTransaction(
            status="Accepted" if ok else "Rejected"
        )

    @on("RequestStopTransaction")
    async def on_request_stop(self, transaction_id: str, **_: Any) -> Any:
        ok = self.sim.remote_stop(transaction_id)
        return self._module.call_result.RequestStopTransaction(
            status="Accepted" if ok else "Rejected"
        )

    @on("SetChargingProfile")
    async def on_set_charging_profile(
        self, evse_id: int, charging_profile: dict[str, Any], **_: Any
    ) -> Any:
        ok = self.sim.set_charging_profile(charging_profile.get("transaction_id"), charging_profile)
        return self._module.call_result.SetChargingProfile(status="Accepted" if ok else "Rejected")

    @on("CostUpdated")
    async def on_cost_updated(self, total_cost: float, transaction_id: str, **_: Any) -> Any:
        self.sim.cost_updated(transaction_id, total_cost)
        return self._module.call_result.CostUpdated()

    @on("TriggerMessage")
    async def on_trigger(self, requested_message: str, **_: Any) -> Any:
        if requested_message == "Heartbeat":
            self.sim.side_call(self._module.call.Heartbeat())
            return self._module.call_result.TriggerMessage(status="Accepted")
        return self._module.call_result.TriggerMessage(status="NotImplemented")

    @on("GetTransactionStatus")
    async def on_get_transaction_status(self, transaction_id: str | None = None, **_: Any) -> Any:
        ongoing, queued = self.sim.transaction_status(transaction_id)
        return self._module.call_result.GetTransactionStatus(
            messages_in_queue=queued, ongoing_indicator=ongoing
        )


class _Client21(_Client201, v21.ChargePoint):
    _module: Any = v21
    _call = v21.call
    _call_result = v21.call_result
    _ocpp_version = "2.1"
