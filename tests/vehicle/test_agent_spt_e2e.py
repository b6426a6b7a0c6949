"""The SPT path end to end: the agent pays the 402 with a Shared Payment Token issued for
that challenge by the sandbox's SPT layer (in front of localstripe), the station holds and
captures with it, and the receipt checks out."""

from __future__ import annotations

from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from simulators.battery import Battery
from simulators.spt_sandbox import SptSandbox
from simulators.stripe_sandbox import SANDBOX_API_KEY
from station.app import Station, running_station
from station.settings import Settings
from tests.vehicle import test_agent_e2e as e2e
from vehicle.agent import VehicleAgent
from vehicle.goal import Goal
from vehicle.money import Money
from vehicle.spt import StripeTokenIssuer
from vehicle.wallet import Instrument, JsonFileLedger, SpendLimits, Wallet

world = e2e.world  # the same charge points and registered agent, on this module's station


@pytest.fixture
async def sandbox(stripe_url: str) -> AsyncIterator[SptSandbox]:
    async with SptSandbox(stripe_url).running() as running:
        yield running


@pytest.fixture
async def station(database_url: str, sandbox: SptSandbox) -> AsyncIterator[Station]:
    settings = Settings(
        database_url=database_url,
        http_port=0,
        ocpp_port=0,
        admin_token=e2e.ADMIN_TOKEN,
        secret_key="vehicle-spt-secret-0123456789abcdef",
        stripe_api_key=SANDBOX_API_KEY,
        stripe_api_base=sandbox.url,
        mpp_network_id="profile_station_7",
        log_level="WARNING",
    )
    async with running_station(settings) as running:
        yield running


async def test_the_agent_pays_with_a_token_issued_for_the_challenge(
    world: e2e.World, sandbox: SptSandbox, tmp_path: Path
) -> None:
    issuer = StripeTokenIssuer(SANDBOX_API_KEY, "pm_card_visa", api_base=sandbox.url)
    wallet = Wallet(
        Instrument("pm_card_visa"),
        SpendLimits(Money.parse("40.00", "usd"), Money.parse("60.00", "usd")),
        JsonFileLedger(tmp_path / "spend.json"),
        issuer=issuer,
    )

    async with e2e.charge_point(world.station) as sim:
        sim.plug_in(1, Battery(capacity_kwh=Decimal(60), soc=Decimal("0.5")))
        async with VehicleAgent(world.agent_id, world.key, wallet, poll_interval_s=0.2) as agent:
            outcome = await agent.charge(
                Goal(Decimal(5), Money.parse("10.00", "usd")), [world.target()]
            )

    assert outcome.ok, (outcome.session.status, outcome.verdict)
    ((token_id, token),) = sandbox.tokens.items()
    cap_minor = outcome.deal.accept.cap.rounded().to_minor_units()
    assert token.used_by is not None  # consumed by the station's hold
    assert (token.max_amount, token.currency) == (cap_minor, "usd")
    assert token.network_business_profile == "profile_station_7"
    async with httpx.AsyncClient(base_url=sandbox.url) as stripe:
        intent = (
            await stripe.get(
                f"/v1/payment_intents/{outcome.session.payment_reference}",
                headers={"Authorization": f"Bearer {SANDBOX_API_KEY}"},
            )
        ).json()
    assert intent["status"] == "succeeded" and intent["amount"] == cap_minor
    body = outcome.verdict.body if outcome.verdict else None
    assert body is not None
    assert body.captured > 0
    assert wallet.spent_today() == Money(body.captured, "usd")
    assert token_id.startswith("spt_")
