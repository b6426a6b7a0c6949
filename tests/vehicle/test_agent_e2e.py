"""End to end: the vehicle agent against the real station, a simulated charge point
(OCPP over real websockets), localstripe and a real database.

The agent negotiates (with a counter), pays the 402 challenge with
`pm_card_visa`, the station starts the charge point, meters, stops at the
goal, settles, and the agent verifies the receipt — signature included.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from simulators.stripe_sandbox import SANDBOX_API_KEY, stripe_sandbox
from station.app import Station, running_station
from station.settings import Settings
from vehicle.agent import AgentEvent, VehicleAgent
from vehicle.cli import agent_app
from vehicle.client import StationTarget
from vehicle.errors import (
    AgentSuspended,
    AmountExceeded,
    NoDeal,
    PaymentDeclined,
    SpendLimitExceeded,
)
from vehicle.goal import Goal
from vehicle.money import Money
from vehicle.receipt import SIGNATURE_OK
from vehicle.signing import generate_keypair, public_key_b64
from vehicle.wallet import Instrument, JsonFileLedger, SpendLimits, Wallet

ADMIN_TOKEN = "vehicle-e2e-admin-token-0123456789"
CP_PASSWORD = "vehicle-e2e-password-01"


@pytest.fixture(scope="module")
def stripe_url() -> Iterator[str]:
    with stripe_sandbox() as url:
        yield url


@pytest.fixture
async def station(database_url: str, stripe_url: str) -> AsyncIterator[Station]:
    settings = Settings(
        database_url=database_url,
        http_port=0,
        ocpp_port=0,
        admin_token=ADMIN_TOKEN,
        secret_key="vehicle-e2e-secret-0123456789abcdef",
        stripe_api_key=SANDBOX_API_KEY,
        stripe_api_base=stripe_url,
        log_level="WARNING",
    )
    async with running_station(settings) as running:
        yield running


ADMIN_HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Chargepay-Operator": "e2e"}


@dataclass
class World:
    station: Station
    base_url: str
    agent_id: str
    key: Ed25519PrivateKey

    def target(self, charge_point_id: str = "CP-1") -> StationTarget:
        return StationTarget(self.base_url, charge_point_id, 1, agent_id=self.agent_id)

    async def admin(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=ADMIN_HEADERS, timeout=10
        ) as admin:
            response = await admin.post(path, json=body)
        assert response.is_success, response.text
        return response.json()  # type: ignore[no-any-return]

    async def register_agent(self, limit_per_session: str = "50.00") -> tuple[str, Any]:
        key, _ = generate_keypair()
        doc = await self.admin(
            "/v1/admin/agents",
            {
                "name": "e2e-car", "public_key": public_key_b64(key), "currency": "usd",
                "limit_per_session": limit_per_session, "limit_per_window": "200.00",
                "window_hours": 24,
            },
        )  # fmt: skip
        return doc["agent_id"], key


@pytest.fixture
async def world(station: Station) -> AsyncIterator[World]:
    base_url = f"http://127.0.0.1:{station.http_port}"
    world = World(station, base_url, "", Ed25519PrivateKey.generate())
    for cp in ("CP-1", "CP-2"):
        await world.admin(
            "/v1/admin/charge-points", {"charge_point_id": cp, "password": CP_PASSWORD}
        )
    world.agent_id, world.key = await world.register_agent()
    yield world


def charge_point(station: Station, cp: str = "CP-1") -> SimulatedChargePoint:
    return SimulatedChargePoint(
        f"ws://127.0.0.1:{station.ocpp_port}/ocpp", cp, password=CP_PASSWORD,
        version="ocpp2.0.1", time_scale=600, meter_interval_s=60, charger_max_kw=50,
    )  # fmt: skip


def wallet(tmp_path: Path, per_session: str = "40.00", per_day: str = "60.00") -> Wallet:
    return Wallet(
        Instrument("pm_card_visa"),
        SpendLimits(Money.parse(per_session, "usd"), Money.parse(per_day, "usd")),
        JsonFileLedger(tmp_path / "spend.json"),
    )


async def test_the_agent_negotiates_pays_charges_and_verifies_the_receipt(
    world: World, tmp_path: Path
) -> None:
    events: list[AgentEvent] = []
    the_wallet = wallet(tmp_path)
    goal = Goal(
        energy_kwh=Decimal(20),
        budget=Money.parse("10.00", "usd"),
        departure_at=datetime.now(UTC) + timedelta(hours=6),  # relaxed: bargains
        max_power_kw=Decimal(50),
    )

    async with charge_point(world.station) as sim:
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.2")))
        async with VehicleAgent(
            world.agent_id, world.key, the_wallet, on_event=events.append, poll_interval_s=0.2
        ) as agent:
            outcome = await agent.charge(goal, [world.target()])

    kinds = [event.kind for event in events]
    assert "counter" in kinds, kinds
    assert "meter" in kinds and kinds.count("poll") == 1  # the stream carried it; one last look
    assert kinds.index("challenge") < kinds.index("paid")
    assert outcome.session.status == "settled"
    assert outcome.verdict is not None and outcome.verdict.accepted, outcome.verdict.reasons
    assert SIGNATURE_OK in outcome.verdict.notes
    body = outcome.verdict.body
    assert body is not None
    assert Decimal(20) <= body.energy_kwh < Decimal(23)  # stopped at the goal, metered late
    assert body.captured <= outcome.deal.accept.cap.amount
    assert body.captured + body.released == outcome.deal.accept.cap.amount
    assert outcome.deal.accept.offer.tariff.energy_price_per_kwh < Decimal("0.45")  # bargained
    assert the_wallet.spent_today() == Money(body.captured, "usd")
    assert outcome.ok


async def test_it_asks_every_charge_point_and_walks_away_when_none_fits_the_budget(
    world: World, tmp_path: Path
) -> None:
    tiny = Goal(Decimal(30), Money.parse("3.00", "usd"))

    async with VehicleAgent(world.agent_id, world.key, wallet(tmp_path)) as agent:
        with pytest.raises(NoDeal) as no_deal:
            await agent.charge(tiny, [world.target("CP-1"), world.target("CP-2")])

    assert len(no_deal.value.reasons) == 2
    assert all(
        "walked away" in r or "exceeds the budget" in r or "rejected" in r or "reservation" in r
        for r in no_deal.value.reasons
    ), no_deal.value.reasons


async def test_the_wallet_refuses_before_anything_is_paid_when_the_day_is_spent(
    world: World, tmp_path: Path
) -> None:
    spent = wallet(tmp_path, per_day="10.00")
    spent.hold("off_earlier", Money.parse("10.00", "usd"))
    goal = Goal(Decimal(20), Money.parse("15.00", "usd"))

    async with VehicleAgent(world.agent_id, world.key, spent) as agent:
        with pytest.raises(SpendLimitExceeded):
            await agent.charge(goal, [world.target()])


def tight_goal() -> Goal:
    return Goal(Decimal(20), Money.parse("10.00", "usd"))


async def test_a_declined_card_is_a_typed_error_with_a_fresh_challenge_and_no_spend(
    world: World, tmp_path: Path
) -> None:
    declined = Wallet(
        Instrument("pm_card_chargeCustomerFail"),
        SpendLimits(Money.parse("40.00", "usd"), Money.parse("60.00", "usd")),
    )

    async with (
        charge_point(world.station) as sim,
        VehicleAgent(world.agent_id, world.key, declined) as agent,
    ):
        await asyncio.wait_for(sim.booted.wait(), 10)
        with pytest.raises(PaymentDeclined) as refused:
            await agent.charge(tight_goal(), [world.target()])

    assert refused.value.www_authenticate is not None
    assert refused.value.www_authenticate.startswith("Payment ")
    assert declined.spent_today() == Money.zero("usd")


async def test_a_cap_above_the_operator_limit_is_refused_and_the_hold_dropped(
    world: World, tmp_path: Path
) -> None:
    agent_id, key = await world.register_agent(limit_per_session="5.00")
    the_wallet = wallet(tmp_path)

    async with VehicleAgent(agent_id, key, the_wallet) as agent:
        with pytest.raises(AmountExceeded):
            await agent.charge(tight_goal(), [StationTarget(world.base_url, "CP-1", 1)])

    assert the_wallet.spent_today() == Money.zero("usd")


async def test_a_suspended_agent_is_told_so(world: World, tmp_path: Path) -> None:
    await world.admin(f"/v1/admin/agents/{world.agent_id}/suspend", {"reason": "stolen car"})

    async with VehicleAgent(world.agent_id, world.key, wallet(tmp_path)) as agent:
        with pytest.raises(AgentSuspended):
            await agent.charge(tight_goal(), [world.target()])


async def test_without_server_sent_events_the_agent_polls_to_the_end(
    world: World, tmp_path: Path
) -> None:
    async with charge_point(world.station) as sim:
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.5")))
        async with VehicleAgent(
            world.agent_id, world.key, wallet(tmp_path), use_events=False, poll_interval_s=0.1
        ) as agent:
            outcome = await agent.charge(Goal(Decimal(5), Money.parse("10.00", "usd")),
                                         [world.target()])  # fmt: skip

    assert outcome.ok, outcome.verdict


async def test_the_cli_charges_and_prints_a_json_summary(world: World, tmp_path: Path) -> None:
    runner = CliRunner()
    key_file = tmp_path / "agent.pem"
    keygen = runner.invoke(agent_app, ["keygen", "--out", str(key_file)])
    doc = await world.admin(
        "/v1/admin/agents",
        {
            "name": "cli-car", "public_key": keygen.stdout.strip().splitlines()[-1],
            "currency": "usd", "limit_per_session": "50.00", "limit_per_window": "200.00",
            "window_hours": 24,
        },
    )  # fmt: skip
    args = [
        "charge", "--station", world.base_url, "--charge-point", "CP-1", "--evse", "1",
        "--energy", "5", "--budget", "10", "--agent-id", doc["agent_id"], "--key", str(key_file),
        "--payment-method", "pm_card_visa", "--spend-record", str(tmp_path / "spend.json"),
        "--limit-session", "50", "--limit-day", "100",
        "--json",
    ]  # fmt: skip

    async with charge_point(world.station) as sim:
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.5")))
        result = await asyncio.to_thread(runner.invoke, agent_app, args)

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["ok"] is True and summary["verdict"] == "accepted"
    assert summary["status"] == "settled"
    assert Decimal(summary["captured"]) + Decimal(summary["released"]) == Decimal(summary["cap"])


async def test_it_asks_two_stations_and_charges_at_the_cheaper(
    world: World, stripe_url: str, tmp_path: Path
) -> None:
    dear_settings = Settings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'dear.db'}",
        http_port=0, ocpp_port=0, admin_token=ADMIN_TOKEN,
        secret_key="vehicle-e2e-dear-0123456789abcdef", stripe_api_key=SANDBOX_API_KEY,
        stripe_api_base=stripe_url, log_level="WARNING",
        list_price_per_kwh=Decimal("0.60"), floor_price_per_kwh=Decimal("0.50"),
    )  # fmt: skip
    goal = Goal(Decimal(10), Money.parse("20.00", "usd"))

    async with running_station(dear_settings) as dear_station:
        dear = World(dear_station, f"http://127.0.0.1:{dear_station.http_port}", "", world.key)
        await dear.admin(
            "/v1/admin/charge-points", {"charge_point_id": "CP-1", "password": CP_PASSWORD}
        )
        dear.agent_id = (
            await dear.admin(
                "/v1/admin/agents",
                {
                    "name": "e2e-car",
                    "public_key": public_key_b64(world.key),
                    "currency": "usd",
                    "limit_per_session": "50.00",
                    "limit_per_window": "200.00",
                    "window_hours": 24,
                },
            )
        )["agent_id"]
        async with charge_point(world.station) as sim:
            sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.5")))
            async with VehicleAgent(world.agent_id, world.key, wallet(tmp_path)) as agent:
                outcome = await agent.charge(goal, [dear.target(), world.target()])

    assert outcome.ok
    assert outcome.deal.target == world.target()
    assert [d.target for d in outcome.alternatives] == [dear.target()], outcome.passed_over
    assert outcome.alternatives[0].accept.estimated_cost > outcome.deal.accept.estimated_cost


async def test_cancelling_the_charge_asks_the_station_to_stop(world: World, tmp_path: Path) -> None:
    charging = asyncio.Event()

    def on_event(event: AgentEvent) -> None:
        if event.kind == "meter":
            charging.set()

    async with (
        charge_point(world.station) as sim,
        VehicleAgent(
            world.agent_id, world.key, wallet(tmp_path), on_event=on_event, stop_on_cancel=True
        ) as agent,
    ):
        plug = sim.plug_in(1, Battery(capacity_kwh=Decimal(200), soc=Decimal("0.1")))
        task = asyncio.create_task(
            agent.charge(Goal(Decimal(60), Money.parse("40.00", "usd")), [world.target()])
        )
        await asyncio.wait_for(charging.wait(), 20)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.wait_for(plug.ended.wait(), 20)

    assert plug.energy_wh is not None and plug.energy_wh < 60_000


async def test_a_broken_event_stream_falls_back_to_polling(world: World, tmp_path: Path) -> None:
    seen: list[str] = []

    async with charge_point(world.station) as sim, VehicleAgent(
        world.agent_id, world.key, wallet(tmp_path), on_event=lambda e: seen.append(e.kind),
        events_idle_timeout_s=0.01, poll_interval_s=0.1,
    ) as agent:  # fmt: skip
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.5")))
        outcome = await agent.charge(
            Goal(Decimal(5), Money.parse("10.00", "usd")), [world.target()]
        )

    assert outcome.ok
    assert seen.count("poll") > 1  # after the stream broke, the agent polled to the end


async def test_the_cli_disputes_a_receipt_that_fails_the_pinned_key(
    world: World, tmp_path: Path
) -> None:
    runner = CliRunner()
    key_file = tmp_path / "agent.pem"
    keygen = runner.invoke(agent_app, ["keygen", "--out", str(key_file)])
    doc = await world.admin(
        "/v1/admin/agents",
        {
            "name": "cli-car", "public_key": keygen.stdout.strip().splitlines()[-1],
            "currency": "usd", "limit_per_session": "50.00", "limit_per_window": "200.00",
            "window_hours": 24,
        },
    )  # fmt: skip
    wrong_key = public_key_b64(Ed25519PrivateKey.generate())
    args = [
        "charge", "--station", world.base_url, "--charge-point", "CP-1", "--energy", "5",
        "--budget", "10", "--agent-id", doc["agent_id"], "--key", str(key_file),
        "--payment-method", "pm_card_visa", "--spend-record", str(tmp_path / "spend.json"),
        "--limit-session", "50", "--limit-day", "100",
        "--receipt-key", wrong_key,
    ]  # fmt: skip

    async with charge_point(world.station) as sim:
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.5")))
        result = await asyncio.to_thread(runner.invoke, agent_app, args)

    assert result.exit_code == 3, result.stderr
    assert "receipt disputed" in result.stderr and "signature" in result.stderr
