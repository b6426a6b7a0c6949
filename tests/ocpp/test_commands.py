"""Station-initiated commands: answered, refused, unanswered, or nobody there."""

from __future__ import annotations

import asyncio
import json

import pytest
from sqlalchemy import select
from websockets.asyncio.client import connect

from station.app import running_station
from station.errors import ChargePointNotConnected, ChargePointTimeout
from station.store.charging import OcppMessageRow
from tests.ocpp.conftest import PASSWORD, basic, registered, settings_for

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def test_commands_to_a_charge_point_that_is_not_connected_fail_at_once(
    database_url: str,
) -> None:
    await registered(database_url)

    async with running_station(settings_for(database_url)) as station:
        with pytest.raises(ChargePointNotConnected):
            await station.connections.start_transaction(
                "CP-1", evse_id=1, id_token="T", remote_start_id=1
            )
        station.connections.post_stop_transaction("CP-1", "tx")  # never raises

    assert not station.connections.is_connected("CP-1")


async def test_an_unanswered_command_times_out_and_the_connection_keeps_serving(
    database_url: str,
) -> None:
    await registered(database_url)

    async with running_station(settings_for(database_url, ocpp_call_timeout_s=0.3)) as station:
        async with connect(
            f"ws://127.0.0.1:{station.ocpp_port}/ocpp/CP-1",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers=basic("CP-1", PASSWORD),
        ) as ws:
            while not station.connections.is_connected("CP-1"):  # noqa: ASYNC110
                await asyncio.sleep(0.01)
            with pytest.raises(ChargePointTimeout):
                await station.connections.start_transaction(
                    "CP-1", evse_id=1, id_token="T", remote_start_id=1
                )
            request = json.loads(await ws.recv())
            await ws.send(json.dumps([2, "hb", "Heartbeat", {}]))
            reply = json.loads(await ws.recv())
        await asyncio.sleep(0.1)
        async with station.db.reader() as session:
            logged = (
                await session.scalars(
                    select(OcppMessageRow.action).where(OcppMessageRow.direction == "out")
                )
            ).all()

    assert request[0] == 2 and request[2] == "RequestStartTransaction"
    assert request[3]["idToken"] == {"idToken": "T", "type": "Central"}
    assert reply[:2] == [3, "hb"]
    assert "RequestStartTransaction" in logged
