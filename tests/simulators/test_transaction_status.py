"""The 2.x simulators answer GetTransactionStatus as a charge point does: whether the
transaction still runs there, and whether its messages still wait in the queue."""

from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from station.app import Station

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp2.1"])
async def test_get_transaction_status_says_ongoing_queued_and_ended(
    station: Station, ocpp_url: str, version: str
) -> None:
    from tests.ocpp.conftest import PASSWORD

    commands = station.connections
    cp = SimulatedChargePoint(
        ocpp_url, "CP-1", PASSWORD, version, time_scale=60, meter_interval_s=60,
        reconnect_max_s=0.1,
    )  # fmt: skip
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        battery = Battery(capacity_kwh=Decimal(60), soc=Decimal("0.2"), target_soc=Decimal(1))
        plug = cp.plug_in(1, battery, id_token="TAG-1")
        await asyncio.wait_for(plug.started.wait(), 5)
        ref = str(plug.transaction_id)
        while cp.pending:  # noqa: ASYNC110 - the start delivered
            await asyncio.sleep(0.01)

        charging = await commands.transaction_status("CP-1", ref)
        unknown = await commands.transaction_status("CP-1", "no-such-transaction")
        cp.go_offline()
        cp.stop(1)
        await asyncio.sleep(0.1)  # it ends offline: the end waits in the queue
        cp.go_online()
        while not commands.is_connected("CP-1"):  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        # Back: the queued end goes out right after the boot; ask before or after it.
        queued = await commands.transaction_status("CP-1", ref)
        await asyncio.wait_for(plug.ended.wait(), 10)
        ended = await commands.transaction_status("CP-1", ref)

    assert charging is not None and (charging.ongoing, charging.messages_in_queue) == (
        True,
        False,
    )
    assert unknown is not None and (unknown.ongoing, unknown.messages_in_queue) == (False, False)
    assert queued is not None and queued.ongoing is False
    assert ended is not None and (ended.ongoing, ended.messages_in_queue) == (False, False)
