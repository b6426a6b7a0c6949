"""End to end: the vehicle agent against the real station, a simulated charge point
(OCPP over real websockets), localstripe and a real database.

The agent negotiates (with a counter), pays the 402 challenge with
`pm_card_visa`, the station starts the charge point, meters, stops at the
goal, settles, and the agent verifies the receipt — signature included.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from simulators.stripe_sandbox import SANDBOX_API_KEY, stripe_sandbox
from station.app import Station, running_station
from station.domain.money import Money
from station.settings import Settings
from vehicle.agent import AgentEvent, VehicleAgent
from vehicle.client import StationTarget
from vehicle.errors import NoDeal, SpendLimitExceeded
from vehicle.goal import Goal
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


@dataclass
class World:
    station: Station
    base_url: str
    agent_id: str
    key: object

    def target(self, charge_point_id: str = "CP-1") -> StationTarget:
        return StationTarget(self.base_url, charge_point_id, 1)


@pytest.fixture
async def world(station: Station) -> AsyncIterator[World]:
    base_url = f"http://127.0.0.1:{station.http_port}"
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}", "X-Chargepay-Operator": "e2e"}
    key, _ = generate_keypair()
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as admin:
        for cp in ("CP-1", "CP-2"):
            response = await admin.post(
                "/v1/admin/charge-points", json={"charge_point_id": cp, "password": CP_PASSWORD}
            )
            assert response.status_code == 201, response.text
        response = await admin.post(
            "/v1/admin/agents",
            json={
                "name": "e2e-car", "public_key": public_key_b64(key), "currency": "usd",
                "limit_per_session": "50.00", "limit_per_window": "200.00", "window_hours": 24,
            },
        )  # fmt: skip
        assert response.status_code == 201, response.text
    yield World(station, base_url, response.json()["agent_id"], key)


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
        ) as agent:  # type: ignore[arg-type]
            outcome = await agent.charge(goal, [world.target()])

    kinds = [event.kind for event in events]
    assert "counter" in kinds, kinds
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

    async with VehicleAgent(world.agent_id, world.key, wallet(tmp_path)) as agent:  # type: ignore[arg-type]
        with pytest.raises(NoDeal) as no_deal:
            await agent.charge(tiny, [world.target("CP-1"), world.target("CP-2")])

    assert len(no_deal.value.reasons) == 2


async def test_the_wallet_refuses_before_anything_is_paid_when_the_day_is_spent(
    world: World, tmp_path: Path
) -> None:
    spent = wallet(tmp_path, per_day="10.00")
    spent.hold("off_earlier", Money.parse("10.00", "usd"))
    goal = Goal(Decimal(20), Money.parse("15.00", "usd"))

    async with VehicleAgent(world.agent_id, world.key, spent) as agent:  # type: ignore[arg-type]
        with pytest.raises(SpendLimitExceeded):
            await agent.charge(goal, [world.target()])
