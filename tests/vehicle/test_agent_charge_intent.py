"""The agent pays a chargepay station on the registered `charge` intent when that is what
it prefers (or all the station offers), and checks the receipt as a charge receipt:
charged = cap, refunded = cap − captured."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pytest

from simulators.battery import Battery
from simulators.stripe_sandbox import SANDBOX_API_KEY
from station.app import Station, running_station
from station.settings import Settings
from tests.vehicle import test_agent_e2e as e2e
from tests.vehicle.test_agent_e2e import World, charge_point, wallet
from vehicle.agent import AgentEvent, VehicleAgent
from vehicle.goal import Goal
from vehicle.money import Money
from vehicle.receipt import SIGNATURE_OK

world = e2e.world


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    """The MPP wire is what is tested here, not the database: SQLite only (the
    payment paths run on both databases in tests/e2e and tests/payments)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'station.db'}"


@pytest.fixture
async def station(
    database_url: str, stripe_url: str, request: pytest.FixtureRequest
) -> AsyncIterator[Station]:
    settings = Settings(
        database_url=database_url,
        http_port=0,
        ocpp_port=0,
        admin_token=e2e.ADMIN_TOKEN,
        secret_key="vehicle-charge-secret-0123456789abcdef",
        stripe_api_key=SANDBOX_API_KEY,
        stripe_api_base=stripe_url,
        log_level="WARNING",
        mpp_intents=getattr(request, "param", "authorize,charge"),
    )
    async with running_station(settings) as running:
        yield running


async def test_the_agent_pays_on_charge_when_it_prefers_it(world: World, tmp_path: Path) -> None:
    await _charge(world, tmp_path, ("charge", "authorize"))


@pytest.mark.parametrize("station", ["charge"], indirect=True)
async def test_the_agent_pays_on_charge_when_the_station_offers_only_that(
    world: World, tmp_path: Path
) -> None:
    await _charge(world, tmp_path, ("authorize", "charge"))


async def test_an_agent_that_takes_only_authorize_pays_on_authorize(
    world: World, tmp_path: Path
) -> None:
    """The default station offers both; this agent takes the hold."""
    events: list[AgentEvent] = []
    async with charge_point(world.station) as sim:
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.2")))
        async with VehicleAgent(
            world.agent_id, world.key, wallet(tmp_path), on_event=events.append,
            poll_interval_s=0.2, intents=("authorize",),
        ) as agent:  # fmt: skip
            outcome = await agent.charge(
                Goal(energy_kwh=Decimal(3), budget=Money.parse("10.00", "usd")), [world.target()]
            )
    (paid,) = [event for event in events if event.kind == "paid"]
    assert paid.data["intent"] == "authorize" and outcome.ok


async def _charge(world: World, tmp_path: Path, preferred: tuple[str, ...]) -> None:
    events: list[AgentEvent] = []
    the_wallet = wallet(tmp_path)
    goal = Goal(energy_kwh=Decimal(5), budget=Money.parse("10.00", "usd"))
    async with charge_point(world.station) as sim:
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.2")))
        async with VehicleAgent(
            world.agent_id, world.key, the_wallet, on_event=events.append,
            poll_interval_s=0.2, intents=preferred,
        ) as agent:  # fmt: skip
            outcome = await agent.charge(goal, [world.target()])

    (paid,) = [event for event in events if event.kind == "paid"]
    assert paid.data["intent"] == "charge"
    assert outcome.session.payment_intent == "charge"
    assert outcome.verdict is not None and outcome.verdict.accepted, outcome.verdict.reasons
    assert SIGNATURE_OK in outcome.verdict.notes
    body = outcome.verdict.body
    assert body is not None and body.intent == "charge"
    cap = outcome.deal.accept.cap.amount
    assert body.charged == cap and body.refunded == cap - body.captured and body.released == 0
    assert the_wallet.spent_today() == Money(body.captured, "usd")
    assert outcome.ok
