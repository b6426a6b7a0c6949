"""OCPP numbers and times at the edge of what Python can hold: a CALLERROR, and the
connection keeps serving; inside a transaction's end, an anomaly, and the end is recorded."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect

from station.app import Station
from station.store.charging import AnomalyRow, TransactionRow
from tests.ocpp.conftest import PASSWORD, basic

CALLERROR_CODES = {
    "FormatViolation",
    "FormationViolation",
    "PropertyConstraintViolation",
    "OccurenceConstraintViolation",
    "OccurrenceConstraintViolation",
    "TypeConstraintViolation",
}


async def raw(url: str, cp_id: str, version: str) -> ClientConnection:
    return await connect(
        f"{url}/{cp_id}", subprotocols=[version], additional_headers=basic(cp_id, PASSWORD)
    )  # type: ignore[list-item]


async def ask(ws: ClientConnection, frame: list[Any]) -> list[Any]:
    await ws.send(json.dumps(frame))
    async with asyncio.timeout(5):
        return json.loads(await ws.recv())  # type: ignore[no-any-return]


def meter_201(multiplier: int = 0, timestamp: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {
        "evseId": 1,
        "meterValue": [
            {
                "timestamp": timestamp,
                "sampledValue": [
                    {"value": 5, "unitOfMeasure": {"unit": "Wh", "multiplier": multiplier}}
                ],
            }
        ],
    }


@pytest.mark.parametrize(
    "payload",
    [
        pytest.param(meter_201(multiplier=10**9), id="multiplier-1e9"),
        pytest.param(meter_201(multiplier=-(10**9)), id="multiplier-minus-1e9"),
        pytest.param(meter_201(timestamp="0001-01-01T00:00:00+01:00"), id="time-before-year-1"),
        pytest.param(meter_201(timestamp="9999-12-31T23:59:59-01:00"), id="time-after-9999"),
    ],
)
async def test_an_unrepresentable_meter_value_gets_a_constraint_callerror(
    ocpp_url: str, payload: dict[str, Any]
) -> None:
    async with await raw(ocpp_url, "CP-1", "ocpp2.0.1") as ws:
        reply = await ask(ws, [2, "m1", "MeterValues", payload])
        after = await ask(ws, [2, "hb", "Heartbeat", {}])

    assert after[:2] == [3, "hb"]
    assert reply[0] == 4 and reply[2] in CALLERROR_CODES, reply


async def test_a_16_start_transaction_stamped_past_year_9999_gets_a_format_violation(
    ocpp_url: str,
) -> None:
    start = {
        "connectorId": 1,
        "idTag": "TAG1",
        "meterStart": 0,
        "timestamp": "9999-12-31T23:59:59-01:00",
    }

    async with await raw(ocpp_url, "CP-2", "ocpp1.6") as ws:
        reply = await ask(ws, [2, "s1", "StartTransaction", start])
        after = await ask(ws, [2, "hb", "Heartbeat", {}])

    assert after[:2] == [3, "hb"]
    assert reply[0] == 4 and reply[2] in CALLERROR_CODES, reply


async def stored(station: Station, cp_id: str) -> tuple[bool, list[str]]:
    async with station.db.reader() as session:
        row = await session.scalar(
            select(TransactionRow).where(TransactionRow.charge_point_id == cp_id)
        )
        kinds = (await session.scalars(select(AnomalyRow.kind))).all()
        assert row is not None
        return bool(row.ended), list(kinds)


async def test_a_transaction_ended_with_an_unrepresentable_reading_still_ends(
    station: Station, ocpp_url: str
) -> None:
    started = {
        "eventType": "Started",
        "timestamp": "2026-01-01T00:00:00Z",
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "T-1"},
        "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "TAG1", "type": "ISO14443"},
    }
    ended = {
        **started,
        "eventType": "Ended",
        "timestamp": "2026-01-01T01:00:00Z",
        "triggerReason": "EVCommunicationLost",
        "seqNo": 1,
        "transactionInfo": {"transactionId": "T-1", "stoppedReason": "EVDisconnected"},
        "meterValue": meter_201(multiplier=10**9)["meterValue"],
    }
    del ended["idToken"]

    async with await raw(ocpp_url, "CP-1", "ocpp2.0.1") as ws:
        start_reply = await ask(ws, [2, "t0", "TransactionEvent", started])
        end_reply = await ask(ws, [2, "t1", "TransactionEvent", ended])

    assert start_reply[0] == 3, start_reply
    assert end_reply[0] == 3, end_reply
    assert await stored(station, "CP-1") == (True, ["non_numeric"])


async def test_a_16_stop_whose_reading_is_stamped_past_year_9999_still_ends(
    station: Station, ocpp_url: str
) -> None:
    start = {
        "connectorId": 1,
        "idTag": "TAG1",
        "meterStart": 0,
        "timestamp": "2026-01-01T00:00:00Z",
    }

    async with await raw(ocpp_url, "CP-2", "ocpp1.6") as ws:
        start_reply = await ask(ws, [2, "s1", "StartTransaction", start])
        stop = {
            "transactionId": start_reply[2]["transactionId"],
            "meterStop": 1000,
            "timestamp": "2026-01-01T01:00:00Z",
            "transactionData": [
                {"timestamp": "9999-12-31T23:59:59-01:00", "sampledValue": [{"value": "900"}]}
            ],
        }
        stop_reply = await ask(ws, [2, "s2", "StopTransaction", stop])

    assert stop_reply[0] == 3, stop_reply
    assert await stored(station, "CP-2") == (True, ["non_numeric"])
