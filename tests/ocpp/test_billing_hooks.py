"""The charging service asks billing after each commit and tells the charge point."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from websockets.asyncio.client import connect

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from station.app import Station
from station.services.ports import Billing, TransactionView
from tests.ocpp.conftest import PASSWORD, basic

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class PricePerKwh:
    """An in-memory billing listener: 0.50 per kWh, tokens starting with BAD refused.

    Given the station's commands, it sends the running cost in CostUpdated, as
    the station's own billing does.
    """

    def __init__(self, max_cost: Decimal | None = None, commands: Any = None) -> None:
        self.max_cost = max_cost
        self.commands = commands
        self.seen: list[TransactionView] = []

    async def id_token_accepted(self, charge_point_id: str, id_token: str) -> bool | None:
        if id_token.startswith("BAD"):
            return False
        return True if id_token.startswith("SES") else None

    async def charge_point_connected(self, charge_point_id: str) -> None:
        pass

    def bill(self, sessions: Any, transaction: TransactionView) -> Callable[[], Billing]:
        def act() -> Billing:  # after the reading's unit committed
            self.seen.append(transaction)
            cost = transaction.energy_wh / 1000 * Decimal("0.5")
            if self.commands is not None and not transaction.ended:
                self.commands.post_cost_updated(
                    transaction.charge_point_id, transaction.transaction_ref, cost
                )
            return Billing(total_cost=cost, max_cost=self.max_cost)

        return act


async def test_a_2_1_charge_point_stops_itself_at_the_cost_limit(
    station: Station, ocpp_url: str
) -> None:
    billing = PricePerKwh(commands=station.connections)
    station.charging.listener = billing
    sim = SimulatedChargePoint(ocpp_url, "CP-1", PASSWORD, "ocpp2.1", time_scale=3600)
    battery = Battery(capacity_kwh=Decimal(80), soc=Decimal("0.1"), max_power_kw=Decimal(50))

    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        plug = sim.plug_in(1, battery)
        await station.connections.start_transaction(
            "CP-1", evse_id=1, id_token="SES-1", remote_start_id=3, max_cost=Decimal("2.50")
        )
        await asyncio.wait_for(plug.ended.wait(), 20)

    assert plug.max_cost == Decimal("2.5")
    assert plug.stop_reason == "CostLimitReached"
    assert plug.total_cost is not None and plug.total_cost >= Decimal("2.5")
    assert not battery.full
    assert billing.seen[-1].ended
    assert billing.seen[-1].energy_wh == Decimal(plug.energy_wh or 0)


async def test_billing_refusing_a_token_answers_invalid_on_every_version(
    station: Station, ocpp_url: str
) -> None:
    station.charging.listener = PricePerKwh()
    start_16 = {"connectorId": 1, "idTag": "BAD-1", "meterStart": 0,
                "timestamp": "2026-01-01T00:00:00Z"}  # fmt: skip
    event_201 = {
        "eventType": "Started", "timestamp": "2026-01-01T00:00:00Z",
        "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": "tx-bad"}, "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "BAD-2", "type": "ISO14443"},
    }  # fmt: skip

    async with connect(
        f"{ocpp_url}/CP-1", subprotocols=["ocpp1.6"], additional_headers=basic("CP-1", PASSWORD)
    ) as ws:
        await ws.send(json.dumps([2, "a", "Authorize", {"idTag": "BAD-1"}]))
        authorize = json.loads(await ws.recv())
        await ws.send(json.dumps([2, "s", "StartTransaction", start_16]))
        start = json.loads(await ws.recv())
    async with connect(
        f"{ocpp_url}/CP-2", subprotocols=["ocpp2.0.1"], additional_headers=basic("CP-2", PASSWORD)
    ) as ws:
        await ws.send(json.dumps([2, "e", "TransactionEvent", event_201]))
        started = json.loads(await ws.recv())

    assert authorize[2] == {"idTagInfo": {"status": "Invalid"}}
    assert start[2]["idTagInfo"] == {"status": "Invalid"}
    assert isinstance(start[2]["transactionId"], int)
    assert started[2]["idTokenInfo"] == {"status": "Invalid"}


async def test_running_costs_reach_a_2_0_1_charge_point_as_total_cost(
    station: Station, ocpp_url: str
) -> None:
    billing = PricePerKwh()
    station.charging.listener = billing
    sim = SimulatedChargePoint(ocpp_url, "CP-1", PASSWORD, "ocpp2.0.1", time_scale=3600)
    battery = Battery(capacity_kwh=Decimal(10), soc=Decimal("0.7"), max_power_kw=Decimal(20))

    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        plug = sim.plug_in(1, battery, id_token="SES-2")
        await asyncio.wait_for(plug.ended.wait(), 20)

    expected = Decimal(plug.energy_wh or 0) / 1000 * Decimal("0.5")
    assert plug.total_cost == expected.quantize(Decimal("0.0001")).normalize()
    assert plug.max_cost is None


async def test_unclaimed_tokens_are_charged_without_asking_billing_again(
    station: Station, ocpp_url: str
) -> None:
    billing = PricePerKwh()
    station.charging.listener = billing
    sim = SimulatedChargePoint(ocpp_url, "CP-1", PASSWORD, "ocpp2.0.1", time_scale=3600)

    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        plug = sim.plug_in(1, Battery(capacity_kwh=Decimal(10), soc=Decimal("0.8")), id_token="T")
        await asyncio.wait_for(plug.ended.wait(), 20)

    assert plug.energy_wh and plug.energy_wh > 0
    assert billing.seen == []
    assert plug.total_cost is None


async def test_trigger_message_reaches_the_charge_point(station: Station, ocpp_url: str) -> None:
    sim = SimulatedChargePoint(ocpp_url, "CP-1", PASSWORD, "ocpp1.6")

    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        accepted = await station.connections.trigger_message("CP-1", "Heartbeat")

    assert accepted


@pytest.mark.parametrize("version", ["ocpp2.0.1", "ocpp2.1"])
async def test_total_cost_is_sent_only_when_the_transaction_has_ended(
    station: Station, ocpp_url: str, version: str
) -> None:
    station.charging.listener = PricePerKwh()
    event = {
        "eventType": "Started", "timestamp": "2026-01-01T00:00:00Z",
        "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": "tx-cost"}, "evse": {"id": 1, "connectorId": 1},
        "idToken": {"idToken": "SES-3", "type": "ISO14443"},
        "meterValue": [{"timestamp": "2026-01-01T00:00:00Z",
                        "sampledValue": [{"value": 1000, "unitOfMeasure": {"unit": "Wh"}}]}],
    }  # fmt: skip

    def later(kind: str, seq_no: int, wh: int) -> dict[str, Any]:
        at = f"2026-01-01T00:{seq_no:02d}:00Z"
        reading = {"timestamp": at, "sampledValue": [{"value": wh}]}
        return {**event, "eventType": kind, "seqNo": seq_no, "timestamp": at,
                "triggerReason": "MeterValuePeriodic", "meterValue": [reading]}  # fmt: skip

    async with connect(
        f"{ocpp_url}/CP-1", subprotocols=[version], additional_headers=basic("CP-1", PASSWORD)
    ) as ws:
        replies = []
        for frame in (event, later("Updated", 1, 3000), later("Ended", 2, 5000)):
            await ws.send(json.dumps([2, f"e{frame['seqNo']}", "TransactionEvent", frame]))
            replies.append(json.loads(await ws.recv())[2])

    started, updated, ended = replies
    assert "totalCost" not in started
    assert "totalCost" not in updated
    assert ended["totalCost"] == 2.0
