"""A refused id token stays refused after a reconnect and after a restart (issue 8 item 1).

The verdict given when the transaction started is stored with it: a charge
point that re-sends its start or end later hears the same status, never
``Accepted`` for a token the station refused.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

from station.app import running_station
from station.services.ports import Billing, TransactionView
from tests.ocpp.conftest import PASSWORD, basic, registered, settings_for


class RefusesBad:
    """Billing that refuses tokens starting with BAD and claims no other."""

    async def id_token_accepted(self, charge_point_id: str, id_token: str) -> bool | None:
        return False if id_token.startswith("BAD") else None

    async def charge_point_connected(self, charge_point_id: str) -> None:
        pass

    def bill(self, sessions: object, transaction: TransactionView) -> Callable[[], Billing]:
        return Billing


@asynccontextmanager
async def station_at(database_url: str) -> AsyncIterator[str]:
    """A running station on the database (free vending off); its OCPP URL."""
    async with running_station(settings_for(database_url, ocpp_free_vend=False)) as station:
        station.charging.listener = RefusesBad()
        yield f"ws://127.0.0.1:{station.ocpp_port}/ocpp/CP-1"


@asynccontextmanager
async def charge_point(url: str, version: str) -> AsyncIterator[ClientConnection]:
    async with connect(
        url,
        subprotocols=[version],
        additional_headers=basic("CP-1", PASSWORD),  # type: ignore[list-item]
    ) as ws:
        yield ws


async def call(ws: ClientConnection, unique_id: str, action: str, payload: dict[str, Any]) -> Any:
    await ws.send(json.dumps([2, unique_id, action, payload]))
    while True:
        frame = json.loads(await ws.recv())
        if frame[1] == unique_id:
            assert frame[0] == 3, frame
            return frame[2]


def event(kind: str, seq_no: int) -> dict[str, Any]:
    return {
        "eventType": kind, "timestamp": "2026-01-01T00:00:00Z", "seqNo": seq_no,
        "triggerReason": "Authorized" if kind == "Started" else "StopAuthorized",
        "transactionInfo": {"transactionId": "tx-bad"}, "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "BAD-2", "type": "ISO14443"},
    }  # fmt: skip


async def test_a_2_0_1_start_and_end_resent_after_a_reconnect_stay_invalid(
    database_url: str,
) -> None:
    await registered(database_url)
    async with station_at(database_url) as url:
        async with charge_point(url, "ocpp2.0.1") as ws:
            first = await call(ws, "s1", "TransactionEvent", event("Started", 0))

        async with charge_point(url, "ocpp2.0.1") as ws:
            again = await call(ws, "s2", "TransactionEvent", event("Started", 0))
            ended = await call(ws, "e1", "TransactionEvent", event("Ended", 1))

    assert first["idTokenInfo"]["status"] == "Invalid"
    assert again["idTokenInfo"]["status"] == "Invalid"
    assert ended["idTokenInfo"]["status"] == "Invalid"


async def test_a_2_0_1_end_after_a_station_restart_stays_invalid(database_url: str) -> None:
    await registered(database_url)
    async with station_at(database_url) as url, charge_point(url, "ocpp2.0.1") as ws:
        first = await call(ws, "s1", "TransactionEvent", event("Started", 0))

    async with station_at(database_url) as url, charge_point(url, "ocpp2.0.1") as ws:
        ended = await call(ws, "e1", "TransactionEvent", event("Ended", 1))

    assert first["idTokenInfo"]["status"] == "Invalid"
    assert ended["idTokenInfo"]["status"] == "Invalid"


async def test_a_1_6_stop_after_a_reconnect_and_a_restart_stays_invalid(
    database_url: str,
) -> None:
    await registered(database_url)
    start = {"connectorId": 1, "idTag": "BAD-1", "meterStart": 100,
             "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    async with station_at(database_url) as url:
        async with charge_point(url, "ocpp1.6") as ws:
            started = await call(ws, "s1", "StartTransaction", start)
        stop = {"transactionId": started["transactionId"], "idTag": "BAD-1", "meterStop": 150,
                "timestamp": "2026-01-01T00:10:00Z"}  # fmt: skip
        async with charge_point(url, "ocpp1.6") as ws:
            stopped = await call(ws, "t1", "StopTransaction", stop)

    async with station_at(database_url) as url, charge_point(url, "ocpp1.6") as ws:
        stopped_again = await call(ws, "t2", "StopTransaction", stop)

    assert started["idTagInfo"]["status"] == "Invalid"
    assert stopped["idTagInfo"]["status"] == "Invalid"
    assert stopped_again["idTagInfo"]["status"] == "Invalid"
