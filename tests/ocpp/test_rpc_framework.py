"""The OCPP-J RPC framework to the letter: error spellings, message ids, descriptions,
null payloads and the message types each version knows (issue 8, items 3 to 7)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection

from station.app import Station, running_station
from station.errors import ChargePointTimeout
from station.store.charging import MeterSampleRow, OcppMessageRow
from tests.ocpp.conftest import registered, settings_for
from tests.ocpp.test_bad_input import ask, raw

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def nothing_comes(ws: ClientConnection, wait_s: float = 0.5) -> None:
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(wait_s):
            frame = await ws.recv()
            pytest.fail(f"unexpected frame {frame!r}")


@pytest.mark.parametrize(
    ("version", "code"),
    [
        ("ocpp1.6", "OccurenceConstraintViolation"),
        ("ocpp2.0.1", "OccurrenceConstraintViolation"),
        ("ocpp2.1", "OccurrenceConstraintViolation"),
    ],
)
async def test_only_1_6_spells_occurrence_with_one_r(
    ocpp_url: str, version: str, code: str
) -> None:
    missing = {} if version == "ocpp1.6" else {"reason": "PowerUp"}

    async with await raw(ocpp_url, "CP-1", version) as ws:
        error = await ask(ws, [2, "b1", "BootNotification", missing])

    assert error[:3] == [4, "b1", code]


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
async def test_a_message_id_longer_than_36_characters_gets_a_callerror(
    ocpp_url: str, version: str
) -> None:
    async with await raw(ocpp_url, "CP-1", version) as ws:
        error = await ask(ws, [2, "x" * 37, "Heartbeat", {}])
        longest = await ask(ws, [2, "y" * 36, "Heartbeat", {}])

    assert error[0] == 4 and error[1] == "-1"
    assert error[2] == ("ProtocolError" if version == "ocpp1.6" else "RpcFrameworkError")
    assert longest[:2] == [3, "y" * 36]


@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp2.1"])
async def test_an_error_description_fits_its_255_characters(ocpp_url: str, version: str) -> None:
    boot = {"reason": "PowerUp", "chargingStation": {"model": "m" * 400, "vendorName": "v"}}

    async with await raw(ocpp_url, "CP-1", version) as ws:
        error = await ask(ws, [2, "b1", "BootNotification", boot])
        unknown = await ask(ws, [2, "u1", "Z" * 400, {}])

    assert error[:3] == [4, "b1", "TypeConstraintViolation"]
    assert 0 < len(error[3]) <= 255
    assert unknown[:3] == [4, "u1", "NotImplemented"]
    assert 0 < len(unknown[3]) <= 255


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
async def test_a_null_payload_is_an_empty_payload(ocpp_url: str, version: str) -> None:
    async with await raw(ocpp_url, "CP-1", version) as ws:
        heartbeat = await ask(ws, [2, "h1", "Heartbeat", None])
        boot = await ask(ws, [2, "b1", "BootNotification", None])

    assert heartbeat[:2] == [3, "h1"] and "currentTime" in heartbeat[2]
    assert boot[0] == 4 and boot[1] == "b1" and boot[2].startswith("Occur")


async def test_1_6_ignores_an_unknown_message_type_and_keeps_serving(ocpp_url: str) -> None:
    async with await raw(ocpp_url, "CP-1", "ocpp1.6") as ws:
        await ws.send(json.dumps([7, "m1", "Heartbeat", {}]))
        await ws.send(json.dumps([6, "m2", "Heartbeat", {}]))
        await nothing_comes(ws)
        after = await ask(ws, [2, "hb", "Heartbeat", {}])

    assert after[:2] == [3, "hb"]


@pytest.mark.parametrize(("version", "kind"), [("ocpp2.0.1", 6), ("ocpp2.0.1", 5), ("ocpp2.1", 7)])
async def test_2_x_answers_a_message_type_it_does_not_know_with_message_type_not_supported(
    ocpp_url: str, version: str, kind: int
) -> None:
    async with await raw(ocpp_url, "CP-1", version) as ws:
        error = await ask(ws, [kind, "m1", "Heartbeat", {}])

    assert error[:3] == [4, "m1", "MessageTypeNotSupported"]


async def test_2_1_never_answers_a_send_nor_a_callresulterror(
    station: Station, ocpp_url: str
) -> None:
    async with await raw(ocpp_url, "CP-1", "ocpp2.1") as ws:
        await ws.send(json.dumps([6, "s1", "Heartbeat", {}]))
        await ws.send(json.dumps([6, "s2", "MakeCoffee", {}]))
        await ws.send(json.dumps([6, "s3", "NotifyPeriodicEventStream", {"id": 1}]))  # invalid
        await ws.send(json.dumps([5, "r1", "FormatViolation", "your CALLRESULT was bad", {}]))
        await nothing_comes(ws)
        after = await ask(ws, [2, "hb", "Heartbeat", {}])
    await asyncio.sleep(0.3)

    assert after[:2] == [3, "hb"]
    async with station.db.reader() as session:
        logged = (
            await session.execute(
                select(OcppMessageRow.message_type, OcppMessageRow.direction).where(
                    OcppMessageRow.message_id.in_(["s1", "s2", "s3", "r1"])
                )
            )
        ).all()
    assert sorted(logged) == [(5, "in"), (6, "in"), (6, "in"), (6, "in")]


async def test_2_1_stores_a_periodic_event_stream_like_meter_values(
    station: Station, ocpp_url: str
) -> None:
    opened = {"constantStreamData": {"id": 4, "variableMonitoringId": 17, "params": {}}}
    stream: dict[str, Any] = {
        "id": 4,
        "pending": 0,
        "basetime": "2026-01-01T00:00:00Z",
        "data": [{"t": 0, "v": "230.5"}, {"t": 1.5, "v": "231"}, {"t": 3, "v": "n/a"}],
    }

    async with await raw(ocpp_url, "CP-1", "ocpp2.1") as ws:
        reply = await ask(ws, [2, "o1", "OpenPeriodicEventStream", opened])
        await ws.send(json.dumps([6, "n1", "NotifyPeriodicEventStream", stream]))
        await nothing_comes(ws)
    await asyncio.sleep(0.3)

    assert reply == [3, "o1", {"status": "Accepted"}]
    async with station.db.reader() as session:
        rows = (
            await session.scalars(select(MeterSampleRow).order_by(MeterSampleRow.timestamp))
        ).all()
        samples = [(r.measurand, r.value, r.raw, r.timestamp.isoformat()) for r in rows]
    assert [(m, v, raw) for m, v, raw, _ in samples] == [
        ("Monitor.17", 230.5, None),
        ("Monitor.17", 231, None),
        ("Monitor.17", None, "n/a"),
    ]
    assert [at for *_, at in samples] == [
        "2026-01-01T00:00:00+00:00",
        "2026-01-01T00:00:01.500000+00:00",
        "2026-01-01T00:00:03+00:00",
    ]


async def test_station_calls_go_one_at_a_time_and_a_timeout_lets_the_next_one_go(
    database_url: str,
) -> None:
    """The second call waits for the first; when the first times out (no frame comes in to
    wake the receive loop), the connection sends the second by itself."""
    await registered(database_url)

    async with (
        running_station(settings_for(database_url, ocpp_call_timeout_s=0.5)) as station,
        await raw(f"ws://127.0.0.1:{station.ocpp_port}/ocpp", "CP-1", "ocpp2.0.1") as ws,
    ):
        commands = station.connections
        first = asyncio.create_task(commands.trigger_message("CP-1", "Heartbeat"))
        second = asyncio.create_task(commands.trigger_message("CP-1", "StatusNotification", 1))
        call = json.loads(await ws.recv())
        await nothing_comes(ws, 0.3)  # one call in flight at a time
        with pytest.raises(ChargePointTimeout):
            await first
        call_2 = json.loads(await asyncio.wait_for(ws.recv(), 5))
        await ws.send(json.dumps([3, call_2[1], {"status": "Accepted"}]))

        assert call[3] == {"requestedMessage": "Heartbeat"}
        assert call_2[3] == {"requestedMessage": "StatusNotification", "evse": {"id": 1}}
        assert await asyncio.wait_for(second, 5) is True
