"""An end the station could not store is asked for again after recovery (issue 14 item 4).

The charge point here drops the end it could not deliver instead of sending
it again on reconnecting. Once it has been back a while the station asks:
GetTransactionStatus on 2.x, RemoteStopTransaction on 1.6. A charge point
that no longer has the transaction gets it ended by the station at its last
stored reading, so billing settles; one that still queues the end is waited
for.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection

from station.app import Station, running_station
from station.services.charging import END_NOT_RECEIVED
from station.store.charging import AnomalyRow, TransactionRow
from tests.ocpp.conftest import registered, settings_for
from tests.ocpp.test_transaction_outage import call, connect_as, unanswered_then_closed
from tests.outage import database_outage

REGISTER = "Energy.Active.Import.Register"
TRIGGERS = {"Started": "Authorized", "Updated": "MeterValuePeriodic", "Ended": "EVDeparted"}


def reading(at: str, wh: int | str) -> list[dict[str, Any]]:
    return [{"timestamp": at, "sampledValue": [{"value": wh, "measurand": REGISTER}]}]


def event(kind: str, seq_no: int, at: str, wh: int) -> dict[str, Any]:
    return {
        "eventType": kind, "timestamp": at, "seqNo": seq_no,
        "triggerReason": TRIGGERS[kind],
        "transactionInfo": {"transactionId": "tx-9"}, "evse": {"id": 1, "connectorId": 1},
        "meterValue": reading(at, wh),
    }  # fmt: skip


async def station_call(ws: ClientConnection, action: str) -> tuple[str, dict[str, Any]]:
    """Wait for the station to call ``action``; its unique id and payload."""
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if frame[0] == 2 and frame[2] == action:
            return frame[1], frame[3]


async def stored(station: Station) -> tuple[TransactionRow, list[str]]:
    async with station.db.reader() as session:
        row = await session.scalar(select(TransactionRow))
        assert row is not None
        session.expunge(row)
        kinds = list(await session.scalars(select(AnomalyRow.kind)))
    return row, kinds


async def ended_by_then(station: Station) -> tuple[TransactionRow, list[str]]:
    async with asyncio.timeout(15):
        while True:
            row, kinds = await stored(station)
            if row.ended:
                return row, kinds
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("queued", [False, True], ids=["dropped", "still-queued"])
async def test_a_2_0_1_end_never_resent_is_asked_for_with_get_transaction_status(
    database_url: str, monkeypatch: pytest.MonkeyPatch, queued: bool
) -> None:
    await registered(database_url)
    ended = event("Ended", 2, "2026-01-01T00:20:00Z", 1800)
    async with (
        database_outage(database_url, monkeypatch) as outage,
        running_station(settings_for(outage.url, ocpp_missing_end_after_s=0.5)) as station,
    ):
        async with connect_as(station, "ocpp2.0.1") as ws:
            await call(
                ws, "s", "TransactionEvent", event("Started", 0, "2026-01-01T00:00:00Z", 1000)
            )
            await call(
                ws, "u", "TransactionEvent", event("Updated", 1, "2026-01-01T00:10:00Z", 1500)
            )
            await outage.down()
            await unanswered_then_closed(ws, "e", "TransactionEvent", ended)
        await outage.up()
        async with connect_as(station, "ocpp2.0.1") as ws:  # back, and the end is not resent
            unique_id, asked = await station_call(ws, "GetTransactionStatus")
            status = {"messagesInQueue": queued, "ongoingIndicator": False}
            await ws.send(json.dumps([3, unique_id, status]))
            if queued:
                await call(ws, "e", "TransactionEvent", ended)
            row, anomalies = await ended_by_then(station)

    assert asked == {"transactionId": "tx-9"}
    if queued:
        assert (row.energy_wh, row.stop_reason) == (800, None)
        assert "end_not_received" not in anomalies
    else:
        assert (row.energy_wh, row.stop_reason) == (500, END_NOT_RECEIVED)
        assert "end_not_received" in anomalies


async def test_a_1_6_end_never_resent_is_asked_for_with_a_remote_stop(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await registered(database_url)
    async with (
        database_outage(database_url, monkeypatch) as outage,
        running_station(settings_for(outage.url, ocpp_missing_end_after_s=0.5)) as station,
    ):
        async with connect_as(station, "ocpp1.6") as ws:
            start = {"connectorId": 1, "idTag": "TAG", "meterStart": 1000,
                     "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
            started = await call(ws, "s", "StartTransaction", start)
            tid = started[2]["transactionId"]
            meter = {"connectorId": 1, "transactionId": tid,
                     "meterValue": reading("2026-01-01T00:10:00Z", "1500")}  # fmt: skip
            assert (await call(ws, "m", "MeterValues", meter))[0] == 3
            stop = {"transactionId": tid, "meterStop": 1800, "reason": "EVDisconnected",
                    "timestamp": "2026-01-01T00:20:00Z"}  # fmt: skip
            await outage.down()
            await unanswered_then_closed(ws, "t", "StopTransaction", stop)
        await outage.up()
        async with connect_as(station, "ocpp1.6") as ws:
            unique_id, asked = await station_call(ws, "RemoteStopTransaction")
            await ws.send(json.dumps([3, unique_id, {"status": "Rejected"}]))  # not running
            row, anomalies = await ended_by_then(station)
            late = await call(ws, "t", "StopTransaction", stop)  # the real end, after all
            late_row, _ = await stored(station)

    assert asked == {"transactionId": tid}
    assert (row.energy_wh, row.stop_reason) == (500, END_NOT_RECEIVED)
    assert "end_not_received" in anomalies
    assert late[0] == 3
    assert (late_row.energy_wh, late_row.stop_reason) == (800, "EVDisconnected")
