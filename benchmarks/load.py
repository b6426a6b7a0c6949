"""Load generators: many OCPP 2.0.1 charge points on raw websockets.

Raw frames keep the generator cheap, so the server is what is measured.
Each charge point boots, starts a transaction, then sends TransactionEvent
(Updated) frames with a rising energy register as fast as the server answers
(closed loop: one frame in flight per charge point).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

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


async def _call(ws: ClientConnection, unique_id: str, action: str, payload: dict) -> list:
    await ws.send(json.dumps([2, unique_id, action, payload]))
    while True:
        reply = json.loads(await ws.recv())
        if reply[0] == 2:  # a call from the server: answer it and keep waiting
            await ws.send(json.dumps([3, reply[1], {}]))
            continue
        if reply[1] == unique_id:
            return reply


def _stamp(n: int) -> str:
    return (EPOCH + timedelta(seconds=n)).isoformat().replace("+00:00", "Z")


def _event(cp_id: str, kind: str, seq_no: int, energy_wh: int) -> dict:
    event: dict = {
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
