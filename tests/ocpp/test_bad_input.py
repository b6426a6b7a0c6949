"""Bad input gets a defined CALLERROR (or answer) and the station keeps serving everyone."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from sqlalchemy import select
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from simulators.charge_point import SimulatedChargePoint
from station.app import Station
from station.store.charging import AnomalyRow, MeterSampleRow, OcppMessageRow
from tests.ocpp.conftest import PASSWORD, basic

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

BOOT_201 = {"reason": "PowerUp", "chargingStation": {"model": "m", "vendorName": "v"}}


async def raw(url: str, cp_id: str, version: str) -> ClientConnection:
    return await connect(
        f"{url}/{cp_id}",
        subprotocols=[version],  # type: ignore[list-item]
        additional_headers=basic(cp_id, PASSWORD),
        max_size=None,
    )


async def ask(ws: ClientConnection, frame: str | list[Any]) -> list[Any]:
    await ws.send(frame if isinstance(frame, str) else json.dumps(frame))
    async with asyncio.timeout(5):
        return json.loads(await ws.recv())  # type: ignore[no-any-return]


@pytest.fixture
async def bystander(ocpp_url: str) -> AsyncIterator[SimulatedChargePoint]:
    """Another charge point, booted, whose heartbeats must keep being answered."""
    sim = SimulatedChargePoint(ocpp_url, "CP-3", PASSWORD, "ocpp2.0.1", time_scale=1)
    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        yield sim


async def still_served(sim: SimulatedChargePoint) -> None:
    client = sim._client
    assert client is not None
    from ocpp.v201 import call

    result = await asyncio.wait_for(client.call(call.Heartbeat(), suppress=False), 5)
    assert result.current_time


@pytest.mark.parametrize(
    ("version", "code"), [("ocpp1.6", "FormationViolation"), ("ocpp2.0.1", "FormatViolation")]
)
async def test_a_frame_that_is_not_json_gets_a_format_violation_and_the_connection_survives(
    ocpp_url: str, bystander: SimulatedChargePoint, version: str, code: str
) -> None:
    async with await raw(ocpp_url, "CP-1", version) as ws:
        error = await ask(ws, "this is not json {")
        after = await ask(ws, [2, "hb", "Heartbeat", {}])

    assert error[:3] == [4, "-1", code]
    assert after[0] == 3 and after[1] == "hb"
    await still_served(bystander)


async def test_json_nested_past_the_stack_gets_a_format_violation_and_the_connection_survives(
    ocpp_url: str, bystander: SimulatedChargePoint
) -> None:
    async with await raw(ocpp_url, "CP-1", "ocpp2.0.1") as ws:
        # 990 levels parse, but walking them (redaction, triggered by "idTag") overflows.
        error = await ask(ws, '[2,"d","DataTransfer",{"idTag":' + "[" * 990 + "]" * 990 + "}]")
        after = await ask(ws, [2, "hb", "Heartbeat", {}])

    assert error[:3] == [4, "-1", "FormatViolation"]
    assert after[0] == 3 and after[1] == "hb"
    await still_served(bystander)


@pytest.mark.parametrize(
    ("version", "code"), [("ocpp1.6", "ProtocolError"), ("ocpp2.1", "RpcFrameworkError")]
)
async def test_json_that_is_not_an_rpc_frame_gets_an_rpc_error(
    ocpp_url: str, version: str, code: str
) -> None:
    async with await raw(ocpp_url, "CP-1", version) as ws:
        error = await ask(ws, {"not": "a list"})
        short = await ask(ws, [2, "x1"])
        after = await ask(ws, [2, "hb", "Heartbeat", {}])

    assert error[0] == 4 and error[2] == code
    assert short[:3] == [4, "x1", code]
    assert after[:2] == [3, "hb"]


@pytest.mark.parametrize("version", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
async def test_an_unknown_action_gets_not_implemented_and_a_known_unhandled_one_not_supported(
    ocpp_url: str, version: str
) -> None:
    async with await raw(ocpp_url, "CP-1", version) as ws:
        unknown = await ask(ws, [2, "u1", "MakeCoffee", {}])
        unhandled = await ask(ws, [2, "u2", "Reset", {"type": "Immediate"}])
        after = await ask(ws, [2, "hb", "Heartbeat", {}])

    assert unknown[:3] == [4, "u1", "NotImplemented"]
    assert unhandled[:3] == [4, "u2", "NotSupported"]
    assert after[:2] == [3, "hb"]


@pytest.mark.parametrize(
    ("version", "frame", "code"),
    [
        ("ocpp1.6", [2, "s1", "BootNotification", {"chargePointVendor": "v"}],
         "OccurenceConstraintViolation"),
        ("ocpp2.0.1", [2, "s1", "BootNotification", {"reason": "PowerUp"}],
         "OccurrenceConstraintViolation"),
        ("ocpp2.1", [2, "s1", "BootNotification", {"reason": "PowerUp"}],
         "OccurrenceConstraintViolation"),
        ("ocpp2.0.1", [2, "s1", "BootNotification", {**BOOT_201, "reason": 7}],
         "TypeConstraintViolation"),
        ("ocpp2.0.1", [2, "s1", "BootNotification", {**BOOT_201, "reason": "Bored"}],
         "PropertyConstraintViolation"),
        ("ocpp1.6", [2, "s1", "Heartbeat", {"extra": 1}], "FormationViolation"),
        ("ocpp2.0.1", [2, "s1", "Heartbeat", {"extra": 1}], "FormatViolation"),
        ("ocpp1.6", [2, "s1", "BootNotification", {"chargePointVendor": "v" * 21,
         "chargePointModel": "m"}], "TypeConstraintViolation"),
    ],
)  # fmt: skip
async def test_a_payload_that_breaks_the_schema_gets_the_matching_constraint_error(
    ocpp_url: str, version: str, frame: list[Any], code: str
) -> None:
    async with await raw(ocpp_url, "CP-1", version) as ws:
        error = await ask(ws, frame)
        after = await ask(ws, [2, "hb", "Heartbeat", {}])

    assert error[:3] == [4, "s1", code]
    assert isinstance(error[3], str) and isinstance(error[4], dict)
    assert after[:2] == [3, "hb"]


async def test_a_two_megabyte_frame_closes_that_connection_with_1009_and_others_are_served(
    ocpp_url: str, bystander: SimulatedChargePoint
) -> None:
    huge = json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "a" * 2_000_000}])

    async with await raw(ocpp_url, "CP-1", "ocpp2.0.1") as ws:
        await ws.send(huge)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), 5)

    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1009
    assert closed.value.rcvd.reason
    await still_served(bystander)


async def test_readings_for_an_unknown_transaction_are_answered_kept_and_flagged(
    station: Station, ocpp_url: str
) -> None:
    reading = {
        "timestamp": "2026-01-01T00:00:00Z",
        "sampledValue": [{"value": 1234, "unitOfMeasure": {"unit": "Wh"}}],
    }
    event = {
        "eventType": "Updated",
        "timestamp": "2026-01-01T00:00:00Z",
        "triggerReason": "MeterValuePeriodic",
        "seqNo": 3,
        "transactionInfo": {"transactionId": "never-started"},
        "meterValue": [reading],
    }
    meter_16 = {
        "connectorId": 1,
        "transactionId": 999,
        "meterValue": [{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": "10"}]}],
    }

    async with await raw(ocpp_url, "CP-1", "ocpp2.0.1") as ws:
        updated = await ask(ws, [2, "t1", "TransactionEvent", event])
        ended = await ask(ws, [2, "t2", "TransactionEvent", {**event, "eventType": "Ended"}])
    async with await raw(ocpp_url, "CP-2", "ocpp1.6") as ws:
        meter = await ask(ws, [2, "m1", "MeterValues", meter_16])
        stop = await ask(
            ws,
            [2, "m2", "StopTransaction",
             {"transactionId": 999, "meterStop": 20, "timestamp": "2026-01-01T00:01:00Z"}],
        )  # fmt: skip

    assert updated == [3, "t1", {}]
    assert ended == [3, "t2", {}]
    assert meter == [3, "m1", {}]
    assert stop == [3, "m2", {}]
    async with station.db.reader() as session:
        kinds = (await session.scalars(select(AnomalyRow.kind))).all()
        orphans = (
            await session.scalars(
                select(MeterSampleRow.value).where(MeterSampleRow.transaction_id.is_(None))
            )
        ).all()
    assert kinds.count("unknown_transaction") == 4
    assert sorted(orphans) == [10, 1234, 1234]


async def test_every_frame_is_logged_with_id_tokens_redacted(
    station: Station, ocpp_url: str
) -> None:
    authorize = {"idToken": {"idToken": "SECRET-TOKEN", "type": "ISO14443"}}

    async with await raw(ocpp_url, "CP-1", "ocpp2.0.1") as ws:
        reply = await ask(ws, [2, "a1", "Authorize", authorize])
    await asyncio.sleep(0.2)  # log rows are written with the next batch

    async with station.db.reader() as session:
        rows = (
            await session.scalars(select(OcppMessageRow).where(OcppMessageRow.message_id == "a1"))
        ).all()
        logged = [(r.direction, r.message_type, r.action, r.payload) for r in rows]
    assert reply[2]["idTokenInfo"]["status"] == "Accepted"
    assert ("in", 2, "Authorize", {"idToken": {"idToken": "***", "type": "ISO14443"}}) in logged
    assert any(d == "out" and t == 3 for d, t, _, _ in logged)
    assert "SECRET-TOKEN" not in json.dumps([p for *_, p in logged])
