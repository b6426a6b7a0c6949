"""A start sent again after a slow answer is the same transaction (issue 14 item 3).

A database stall makes the charge point's call time out, so it sends the
start again: on the same connection, or after reconnecting while the first
commit is still waiting. Either way the station answers with the same
transaction and opens no second one.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection

from station.app import Station, running_station
from station.store.charging import AnomalyRow, MeterSampleRow, TransactionRow
from tests.ocpp.conftest import registered, settings_for
from tests.ocpp.test_transaction_outage import connect_as
from tests.outage import Outage, database_outage

START_16 = {"connectorId": 1, "idTag": "TAG-7", "meterStart": 4200,
            "timestamp": "2026-01-01T08:00:00Z"}  # fmt: skip
STARTED_201 = {
    "eventType": "Started", "timestamp": "2026-01-01T08:00:00Z", "triggerReason": "Authorized",
    "seqNo": 0, "transactionInfo": {"transactionId": "tx-7"},
    "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": "TAG-7", "type": "ISO14443"},
    "meterValue": [{"timestamp": "2026-01-01T08:00:00Z", "sampledValue": [
        {"value": 4200, "measurand": "Energy.Active.Import.Register",
         "context": "Transaction.Begin"}]}],
}  # fmt: skip


async def answer(ws: ClientConnection, unique_id: str) -> Any:
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 30))
        if frame[1] == unique_id:
            assert frame[0] == 3, frame
            return frame[2]


async def send(ws: ClientConnection, unique_id: str, action: str, payload: Any) -> None:
    await ws.send(json.dumps([2, unique_id, action, payload]))


async def slow_answer_then_resend(
    station: Station, outage: Outage, version: str, action: str, payload: Any, reconnect: bool
) -> tuple[Any, Any]:
    """Send a start during a stall; time out after 1 s and send it again; both answers."""
    async with connect_as(station, version) as first:
        await outage.stall()
        await send(first, "a", action, payload)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(first.recv(), 1)  # the charge point's call times out
        if not reconnect:
            await send(first, "b", action, payload)
            await outage.resume()
            return await answer(first, "a"), await answer(first, "b")
    async with connect_as(station, version) as second:
        await send(second, "b", action, payload)
        await asyncio.sleep(0.5)  # the resend waits behind the stalled first start
        await outage.resume()
        return None, await answer(second, "b")


async def count(station: Station, table: Any, *where: Any) -> int:
    async with station.db.reader() as session:
        return int(await session.scalar(select(func.count()).select_from(table).where(*where)) or 0)


@pytest.mark.parametrize("reconnect", [False, True], ids=["same-connection", "reconnected"])
async def test_a_1_6_start_sent_again_gets_the_same_transaction_id(
    database_url: str, monkeypatch: pytest.MonkeyPatch, reconnect: bool
) -> None:
    await registered(database_url)
    async with (
        database_outage(database_url, monkeypatch) as outage,
        running_station(settings_for(outage.url)) as station,
    ):
        first, again = await slow_answer_then_resend(
            station, outage, "ocpp1.6", "StartTransaction", START_16, reconnect
        )
        stored = await count(station, TransactionRow)
        async with station.db.reader() as session:
            transaction_id = await session.scalar(select(TransactionRow.id))

    assert stored == 1
    assert again["transactionId"] == transaction_id
    assert again["idTagInfo"]["status"] == "Accepted"
    if first is not None:
        assert first == again


@pytest.mark.parametrize("reconnect", [False, True], ids=["same-connection", "reconnected"])
async def test_a_2_0_1_started_sent_again_is_stored_once(
    database_url: str, monkeypatch: pytest.MonkeyPatch, reconnect: bool
) -> None:
    await registered(database_url)
    async with (
        database_outage(database_url, monkeypatch) as outage,
        running_station(settings_for(outage.url)) as station,
    ):
        first, again = await slow_answer_then_resend(
            station, outage, "ocpp2.0.1", "TransactionEvent", STARTED_201, reconnect
        )
        stored = await count(station, TransactionRow)
        samples = await count(station, MeterSampleRow)
        anomalies = await count(station, AnomalyRow)

    assert stored == 1
    assert samples == 1
    assert anomalies == 0
    assert again["idTokenInfo"]["status"] == "Accepted"
    if first is not None:
        assert first == again
