"""The two baselines the station is measured against, each a server process.

    python -m benchmarks.baselines bare PORT    a bare `websockets` server that parses
                                               each frame and answers an empty CALLRESULT
    python -m benchmarks.baselines plain PORT   a central system written the plain way
                                               with the `ocpp` library and nothing else

Each prints ``READY <port>`` on stdout once it listens.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
from typing import Any

from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v16.enums import Action as Action16
from ocpp.v16.enums import AuthorizationStatus as Auth16
from ocpp.v16.enums import RegistrationStatus as Reg16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201
from ocpp.v201.enums import Action as Action201
from ocpp.v201.enums import RegistrationStatusEnumType
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

SUBPROTOCOLS: Any = ["ocpp2.0.1", "ocpp1.6"]


async def bare_handler(ws: ServerConnection) -> None:
    with contextlib.suppress(ConnectionClosed):
        async for frame in ws:
            message = json.loads(frame)
            await ws.send(json.dumps([3, message[1], {}]))


class Plain201(ChargePoint201):
    @on(Action201.boot_notification)
    async def on_boot(self, **_: Any) -> result201.BootNotification:
        return result201.BootNotification(
            current_time="2026-01-01T00:00:00Z",
            interval=300,
            status=RegistrationStatusEnumType.accepted,
        )

    @on(Action201.heartbeat)
    async def on_heartbeat(self) -> result201.Heartbeat:
        return result201.Heartbeat(current_time="2026-01-01T00:00:00Z")

    @on(Action201.transaction_event)
    async def on_transaction_event(self, **_: Any) -> result201.TransactionEvent:
        return result201.TransactionEvent()

    @on(Action201.meter_values)
    async def on_meter_values(self, **_: Any) -> result201.MeterValues:
        return result201.MeterValues()


class Plain16(ChargePoint16):
    @on(Action16.boot_notification)
    async def on_boot(self, **_: Any) -> result16.BootNotification:
        return result16.BootNotification(
            current_time="2026-01-01T00:00:00Z", interval=300, status=Reg16.accepted
        )

    @on(Action16.heartbeat)
    async def on_heartbeat(self) -> result16.Heartbeat:
        return result16.Heartbeat(current_time="2026-01-01T00:00:00Z")

    @on(Action16.meter_values)
    async def on_meter_values(self, **_: Any) -> result16.MeterValues:
        return result16.MeterValues()

    @on(Action16.start_transaction)
    async def on_start(self, **_: Any) -> result16.StartTransaction:
        return result16.StartTransaction(transaction_id=1, id_tag_info={"status": Auth16.accepted})


async def plain_handler(ws: ServerConnection) -> None:
    cp_id = (ws.request.path if ws.request else "/cp").rstrip("/").rsplit("/", 1)[-1]
    cp_class = Plain201 if ws.subprotocol == "ocpp2.0.1" else Plain16
    with contextlib.suppress(ConnectionClosed):
        await cp_class(cp_id, ws).start()


async def main(kind: str, port: int) -> None:
    handler = {"bare": bare_handler, "plain": plain_handler}[kind]
    async with serve(handler, "127.0.0.1", port, subprotocols=SUBPROTOCOLS) as server:
        bound = next(iter(server.sockets)).getsockname()[1]
        print(f"READY {bound}", flush=True)
        await asyncio.Future()


if __name__ == "__main__":
    import logging

    logging.getLogger("ocpp").setLevel(logging.WARNING)
    asyncio.run(main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) > 2 else 0))
