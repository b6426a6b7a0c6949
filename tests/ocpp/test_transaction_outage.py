"""An end of transaction the station could not commit is sent again (issue 14 item 4).

OCPP lets a charge point discard a transaction message that was answered
with a CALLERROR. During a database outage the station therefore does not
answer an end it could not store: it closes the connection (1013), and the
charge point, which keeps undelivered transaction messages queued while
offline, sends it again once reconnected.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from station.app import Station, running_station
from station.services.ports import Billing, TransactionView
from station.store.charging import TransactionRow
from tests.ocpp.conftest import PASSWORD, basic, registered, settings_for
from tests.outage import database_outage


def connect_as(station: Station, version: str) -> Any:
    return connect(
        f"ws://127.0.0.1:{station.ocpp_port}/ocpp/CP-1",
        subprotocols=[version],  # type: ignore[list-item]
        additional_headers=basic("CP-1", PASSWORD),
    )


async def call(ws: ClientConnection, unique_id: str, action: str, payload: dict[str, Any]) -> Any:
    await ws.send(json.dumps([2, unique_id, action, payload]))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
        if frame[1] == unique_id:
            return frame


async def unanswered_then_closed(
    ws: ClientConnection, unique_id: str, action: str, payload: dict[str, Any]
) -> int | None:
    """Send a CALL that must get no answer at all; the close code the station sent."""
    await ws.send(json.dumps([2, unique_id, action, payload]))
    with pytest.raises(ConnectionClosed):
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 15))
            assert frame[1] != unique_id, f"the station answered: {frame}"
    return ws.close_code


async def transaction_row(station: Station) -> TransactionRow:
    async with station.db.reader() as session:
        row = await session.scalar(select(TransactionRow))
        assert row is not None
        session.expunge(row)
        return row


REGISTER = "Energy.Active.Import.Register"
END_16 = {"meterStop": 1500, "timestamp": "2026-01-01T00:10:00Z", "reason": "EVDisconnected"}


async def test_a_1_6_stop_during_an_outage_is_unanswered_and_stored_when_resent(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await registered(database_url)
    async with (
        database_outage(database_url, monkeypatch) as outage,
        running_station(settings_for(outage.url)) as station,
    ):
        async with connect_as(station, "ocpp1.6") as ws:
            start = {"connectorId": 1, "idTag": "TAG", "meterStart": 1000,
                     "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
            started = await call(ws, "s1", "StartTransaction", start)
            stop = {**END_16, "transactionId": started[2]["transactionId"]}
            await outage.down()
            code = await unanswered_then_closed(ws, "t1", "StopTransaction", stop)
        await outage.up()
        async with connect_as(station, "ocpp1.6") as ws:
            stopped = await call(ws, "t1", "StopTransaction", stop)
        row = await transaction_row(station)

    assert code == 1013
    assert stopped[0] == 3
    assert row.ended and row.energy_wh == 500


async def test_a_2_0_1_ended_during_an_outage_is_unanswered_and_stored_when_resent(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    await registered(database_url)
    event = {
        "timestamp": "2026-01-01T00:00:00Z", "triggerReason": "Authorized",
        "transactionInfo": {"transactionId": "tx-1"}, "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": "2026-01-01T00:00:00Z",
                        "sampledValue": [{"value": 1000, "measurand": REGISTER}]}],
    }  # fmt: skip
    ended = {
        **event, "eventType": "Ended", "seqNo": 1, "triggerReason": "EVCommunicationLost",
        "meterValue": [{"timestamp": "2026-01-01T00:10:00Z",
                        "sampledValue": [{"value": 1800, "measurand": REGISTER,
                                          "context": "Transaction.End"}]}],
    }  # fmt: skip
    async with (
        database_outage(database_url, monkeypatch) as outage,
        running_station(settings_for(outage.url)) as station,
    ):
        async with connect_as(station, "ocpp2.0.1") as ws:
            started = await call(
                ws, "s1", "TransactionEvent", {**event, "eventType": "Started", "seqNo": 0}
            )
            await outage.down()
            code = await unanswered_then_closed(ws, "e1", "TransactionEvent", ended)
        await outage.up()
        async with connect_as(station, "ocpp2.0.1") as ws:
            answered = await call(ws, "e1", "TransactionEvent", ended)
        row = await transaction_row(station)
        missing = dict(station.charging.ends_missing)

    assert started[0] == 3
    assert code == 1013
    assert answered[0] == 3
    assert row.ended and row.energy_wh == 800
    assert missing == {}


class BillingDownOnce:
    """Billing whose database is unreachable the first time it hears of an end (inside the
    end's writer unit, as the station's billing reads the session there)."""

    def __init__(self) -> None:
        self.ends: list[TransactionView] = []
        self.failed = False

    async def id_token_accepted(self, charge_point_id: str, id_token: str) -> bool | None:
        return True

    async def charge_point_connected(self, charge_point_id: str) -> None:
        pass

    def bill(self, sessions: Any, transaction: TransactionView) -> Callable[[], Billing]:
        if transaction.ended and not self.failed:
            self.failed = True
            raise ConnectionRefusedError(111, "Connect call failed")

        def act() -> Billing:
            if transaction.ended:
                self.ends.append(transaction)
            return Billing()

        return act


async def test_an_end_billing_could_not_record_is_unanswered_and_billed_when_resent(
    database_url: str,
) -> None:
    """The end and its billing are one writer unit: billing failing stores neither, and the
    end sent again is stored and billed once."""
    await registered(database_url)
    billing = BillingDownOnce()
    async with running_station(settings_for(database_url)) as station:
        station.charging.listener = billing
        async with connect_as(station, "ocpp1.6") as ws:
            start = {"connectorId": 1, "idTag": "TAG", "meterStart": 1000,
                     "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
            started = await call(ws, "s1", "StartTransaction", start)
            stop = {**END_16, "transactionId": started[2]["transactionId"]}
            code = await unanswered_then_closed(ws, "t1", "StopTransaction", stop)
        between = await transaction_row(station)
        async with connect_as(station, "ocpp1.6") as ws:
            stopped = await call(ws, "t1", "StopTransaction", stop)
        after = await transaction_row(station)

    assert code == 1013
    assert not between.ended and between.meter_stop_wh is None  # the end was not stored
    assert stopped[0] == 3
    assert after.ended and after.energy_wh == 500
    assert [(t.ended, t.energy_wh) for t in billing.ends] == [(True, 500)]


async def test_an_end_billing_did_not_hear_of_before_a_restart_is_billed_when_resent(
    database_url: str,
) -> None:
    """The end was committed, then the station died before billing heard of it (the
    campaign's SIGKILL; here billing's database away, then a new station process): the
    charge point sends the end again to the new process, which has no memory of the
    first; billing must hear of it, else the session stays charging and is ended later
    at its last reading with the rest unbilled."""
    await registered(database_url)
    first = BillingDownOnce()
    async with running_station(settings_for(database_url)) as station:
        station.charging.listener = first
        async with connect_as(station, "ocpp1.6") as ws:
            start = {"connectorId": 1, "idTag": "TAG", "meterStart": 1000,
                     "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
            started = await call(ws, "s1", "StartTransaction", start)
            stop = {**END_16, "transactionId": started[2]["transactionId"]}
            code = await unanswered_then_closed(ws, "t1", "StopTransaction", stop)
    restarted = BillingDownOnce()
    restarted.failed = True  # up this time
    async with running_station(settings_for(database_url)) as station:
        station.charging.listener = restarted
        async with connect_as(station, "ocpp1.6") as ws:
            stopped = await call(ws, "t1", "StopTransaction", stop)

    assert code == 1013
    assert stopped[0] == 3
    assert [(t.ended, t.energy_wh) for t in restarted.ends] == [(True, 500)]
