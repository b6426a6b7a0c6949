"""A hand-driven OCPP 1.6 charge point on a raw websocket: it sends exactly the frames a
test writes (however wrong) and answers the station's calls (RemoteStart, RemoteStop)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
from collections.abc import AsyncIterator
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from tests.e2e.conftest import World


class RawChargePoint16:
    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.calls: list[tuple[str, dict[str, Any]]] = []  # what the station asked of us
        self.remote_start = asyncio.Event()
        self.id_tag: str | None = None
        self._ids = itertools.count(1)
        self._replies: dict[str, asyncio.Future[list[Any]]] = {}

    async def _receive(self) -> None:
        async for text in self.ws:
            frame = json.loads(text)
            if frame[0] == 2:
                _, unique_id, action, payload = frame
                self.calls.append((action, payload))
                if action == "RemoteStartTransaction":
                    self.id_tag = payload["idTag"]
                    self.remote_start.set()
                await self.ws.send(json.dumps([3, unique_id, {"status": "Accepted"}]))
            else:
                future = self._replies.pop(frame[1], None)
                if future is not None and not future.done():
                    future.set_result(frame)

    async def send(self, action: str, payload: dict[str, Any]) -> list[Any]:
        """One CALL; its CALLRESULT or CALLERROR frame."""
        unique_id = f"raw-{next(self._ids)}"
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._replies[unique_id] = future
        await self.ws.send(json.dumps([2, unique_id, action, payload]))
        return await asyncio.wait_for(future, 10)

    def stop_requested(self) -> bool:
        return any(action == "RemoteStopTransaction" for action, _ in self.calls)


@contextlib.asynccontextmanager
async def connected(world: World, cp_id: str, password: str) -> AsyncIterator[RawChargePoint16]:
    """A registered 1.6 charge point, connected and booted, driven frame by frame."""
    token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
    async with connect(
        f"{world.ocpp}/{cp_id}",
        subprotocols=["ocpp1.6"],  # type: ignore[list-item]
        additional_headers={"Authorization": f"Basic {token}"},
    ) as ws:
        raw = RawChargePoint16(ws)
        receiver = asyncio.create_task(raw._receive())
        try:
            boot = await raw.send(
                "BootNotification", {"chargePointVendor": "v", "chargePointModel": "m"}
            )
            assert boot[2]["status"] == "Accepted", boot
            yield raw
        finally:
            receiver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiver


@contextlib.asynccontextmanager
async def raw_charge_point(world: World) -> AsyncIterator[tuple[str, RawChargePoint16]]:
    """A newly registered, booted 1.6 charge point driven frame by frame."""
    cp = await world.charge_point("ocpp1.6")  # registers it; the simulator is not started
    async with connected(world, cp.charge_point_id, cp.password) as raw:
        yield cp.charge_point_id, raw
