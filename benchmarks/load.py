"""Load generators: many OCPP 2.0.1 charge points on raw websockets.

Raw frames keep the generator cheap, so the server is what is measured.
Each charge point boots, starts a transaction, then sends TransactionEvent
(Updated) frames with a rising energy register as fast as the server answers
(closed loop: one frame in flight per charge point).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

EPOCH = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass
class Tally:
    messages: int = 0
    errors: int = 0
    latencies_s: list[float] = field(default_factory=list)


def _basic(cp_id: str, password: str | None) -> dict[str, str]:
    if password is None:
        return {}
    token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def _call(
    ws: ClientConnection, unique_id: str, action: str, payload: dict[str, Any]
) -> list[Any]:
    await ws.send(json.dumps([2, unique_id, action, payload]))
    while True:
        reply: list[Any] = json.loads(await ws.recv())
        if reply[0] == 2:  # a call from the server: answer it and keep waiting
            await ws.send(json.dumps([3, reply[1], {}]))
            continue
        if reply[1] == unique_id:
            return reply


def _stamp(n: int) -> str:
    return (EPOCH + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")


def _event(cp_id: str, kind: str, seq_no: int, energy_wh: int) -> dict[str, Any]:
    event: dict[str, Any] = {
        "eventType": kind,
        "timestamp": _stamp(seq_no),
        "triggerReason": "Authorized" if kind == "Started" else "MeterValuePeriodic",
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": f"tx-{cp_id}"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": _stamp(seq_no),
                "sampledValue": [
                    {
                        "value": energy_wh,
                        "measurand": "Energy.Active.Import.Register",
                        "unitOfMeasure": {"unit": "Wh"},
                    }
                ],
            }
        ],
    }
    if kind == "Started":
        event["idToken"] = {"idToken": f"BENCH{cp_id[-10:]}", "type": "Central"}
    return event


BOOT = {"reason": "PowerUp", "chargingStation": {"model": "bench", "vendorName": "chargepay"}}


async def _connect(url: str, cp_id: str, password: str | None) -> ClientConnection:
    return await connect(
        f"{url}/{cp_id}",
        subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
        additional_headers=_basic(cp_id, password),
        open_timeout=60,
        max_queue=None,
        ping_interval=None,
    )


async def _charge_point(
    url: str, cp_id: str, password: str | None, window: _Window, tally: Tally
) -> None:
    async with await _connect(url, cp_id, password) as ws:
        ids = (str(n) for n in itertools.count())
        await _call(ws, next(ids), "BootNotification", BOOT)
        await _call(ws, next(ids), "TransactionEvent", _event(cp_id, "Started", 0, 0))
        start, stop = await window.ready()
        for seq_no in itertools.count(1):
            sent = time.perf_counter()
            if sent >= stop:
                break
            reply = await _call(
                ws, next(ids), "TransactionEvent", _event(cp_id, "Updated", seq_no, seq_no * 10)
            )
            done = time.perf_counter()
            if done >= start:
                tally.messages += 1
                tally.latencies_s.append(done - sent)
                tally.errors += reply[0] == 4


@dataclass
class PaidTally(Tally):
    """`Tally`, plus what the paid mode checks: server calls by action, sessions settled."""

    calls: dict[str, int] = field(default_factory=dict)
    settled: int = 0


def _now_stamp() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _paid_event(
    cp_id: str, kind: str, seq_no: int, energy_wh: int, start: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A TransactionEvent of a remotely started (paid) transaction, stamped now."""
    event = _event(cp_id, kind, seq_no, energy_wh)
    event["timestamp"] = event["meterValue"][0]["timestamp"] = _now_stamp()
    if kind == "Started" and start is not None:
        event["triggerReason"] = "RemoteStart"
        event["idToken"] = start["idToken"]
        event["transactionInfo"]["remoteStartId"] = start["remoteStartId"]
    elif kind == "Ended":
        event["triggerReason"] = "EVCommunicationLost"
        event["transactionInfo"]["stoppedReason"] = "EVDisconnected"
    return event


async def _paid_call(
    ws: ClientConnection, unique_id: str, action: str, payload: dict[str, Any], tally: PaidTally
) -> list[Any]:
    """`_call`, answering the station's calls (CostUpdated, …) and counting them."""
    await ws.send(json.dumps([2, unique_id, action, payload]))
    while True:
        reply: list[Any] = json.loads(await ws.recv())
        if reply[0] == 2:
            tally.calls[reply[2]] = tally.calls.get(reply[2], 0) + 1
            answer = {"status": "Accepted"} if reply[2].startswith("Request") else {}
            await ws.send(json.dumps([3, reply[1], answer]))
            continue
        if reply[1] == unique_id:
            return reply


async def paid_charge_point(
    url: str,
    cp_id: str,
    password: str,
    window: _Window,
    tally: PaidTally,
    booted: asyncio.Event,
    wh_per_reading: int = 1,
) -> None:
    """Boot, wait for the station's RequestStartTransaction (a paid session), then load.

    The transaction is the station's: started with its id token and
    remoteStartId, each reading billed, CostUpdated answered, and ended
    (EVDisconnected) once the window closes, so the station settles it.
    """
    async with await _connect(url, cp_id, password) as ws:
        ids = (str(n) for n in itertools.count())
        await _call(ws, next(ids), "BootNotification", BOOT)
        booted.set()
        while True:  # the agent pays; then the station asks for the start
            message = json.loads(await ws.recv())
            if message[0] != 2:
                continue
            tally.calls[message[2]] = tally.calls.get(message[2], 0) + 1
            if message[2] == "RequestStartTransaction":
                start = message[3]
                await ws.send(json.dumps([3, message[1], {"status": "Accepted"}]))
                break
            await ws.send(json.dumps([3, message[1], {}]))
        started = _paid_event(cp_id, "Started", 0, 0, start)
        await _paid_call(ws, next(ids), "TransactionEvent", started, tally)
        begin, stop = await window.ready()
        seq_no = 0
        for seq_no in itertools.count(1):
            sent = time.perf_counter()
            if sent >= stop:
                break
            event = _paid_event(cp_id, "Updated", seq_no, seq_no * wh_per_reading)
            reply = await _paid_call(ws, next(ids), "TransactionEvent", event, tally)
            done = time.perf_counter()
            if done >= begin:
                tally.messages += 1
                tally.latencies_s.append(done - sent)
                tally.errors += reply[0] == 4
        ended = _paid_event(cp_id, "Ended", seq_no + 1, seq_no * wh_per_reading)
        await _paid_call(ws, next(ids), "TransactionEvent", ended, tally)
        with contextlib.suppress(TimeoutError):  # the station's last calls (CostUpdated, …)
            async with asyncio.timeout(0.5):
                while True:
                    message = json.loads(await ws.recv())
                    if message[0] == 2:
                        tally.calls[message[2]] = tally.calls.get(message[2], 0) + 1
                        await ws.send(json.dumps([3, message[1], {}]))


class _Window:
    """The measured window opens once every charge point is connected and booted.

    Connecting verifies a password hash per charge point; on a loaded machine
    that can outlast the warm-up, and a window opened by the clock alone would
    then measure the handshakes instead of the messages.
    """

    def __init__(self, charge_points: int, warmup_s: float, duration_s: float) -> None:
        self._waiting = charge_points
        self._warmup_s, self._duration_s = warmup_s, duration_s
        self._open = asyncio.Event()
        self.start = self.stop = 0.0

    async def ready(self) -> tuple[float, float]:
        self._waiting -= 1
        if self._waiting == 0:
            now = time.perf_counter()
            self.start, self.stop = now + self._warmup_s, now + self._warmup_s + self._duration_s
            self._open.set()
        await self._open.wait()
        return self.start, self.stop


def window(charge_points: int, warmup_s: float, duration_s: float) -> _Window:
    return _Window(charge_points, warmup_s, duration_s)


async def throughput(
    url: str, credentials: dict[str, str | None], warmup_s: float, duration_s: float
) -> tuple[Tally, float]:
    """Drive every charge point for warm-up + duration; count only the measured window."""
    tally = Tally()
    window = _Window(len(credentials), warmup_s, duration_s)
    async with asyncio.TaskGroup() as tasks:
        for cp_id, password in credentials.items():
            tasks.create_task(_charge_point(url, cp_id, password, window, tally))
    return tally, duration_s


async def idle_fleet(
    url: str,
    credentials: dict[str, str | None],
    heartbeat_s: float,
    hold_s: float,
    connected: asyncio.Event,
    connect_concurrency: int = 100,
) -> int:
    """Connect every charge point, boot it, then heartbeat until `hold_s` has passed."""
    gate = asyncio.Semaphore(connect_concurrency)
    up = 0
    release = asyncio.Event()

    async def one(cp_id: str, password: str | None) -> None:
        nonlocal up
        async with gate:
            ws = await _connect(url, cp_id, password)
            await _call(ws, "boot", "BootNotification", BOOT)
        up += 1
        if up == len(credentials):
            connected.set()
        async with ws:
            for n in itertools.count():
                try:
                    await asyncio.wait_for(release.wait(), heartbeat_s)
                    return
                except TimeoutError:
                    await _call(ws, f"hb{n}", "Heartbeat", {})

    async def timer() -> None:
        await connected.wait()
        await asyncio.sleep(hold_s)
        release.set()

    async with asyncio.TaskGroup() as tasks:
        tasks.create_task(timer())
        for cp_id, password in credentials.items():
            tasks.create_task(one(cp_id, password))
    return up
