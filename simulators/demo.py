"""`chargepay demo`: the whole system on the embedded defaults, in one command.

Starts the Stripe sandbox (localstripe, behind the SPT layer of
`simulators.spt_sandbox`), a station on a temporary SQLite file, six
simulated charge points (two of each OCPP version) and six vehicle agents
with their own goals, budgets and urgency. They bargain, pay the 402
challenge with a Shared Payment Token issued for it, charge (simulated time
runs fast) and settle; each agent checks its receipt. A live table follows
them; the run ends with a table per session and totals (or JSON with
``--json``). Every driver has an expected ending — a verified settlement, or
walking away when no deal fits its budget — and the command exits non-zero if
any session ends otherwise, or when a session delivered more energy than it
billed (its charge point's own meter against the receipt, the part above the
cap included) by more than one meter interval at the session's power.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from simulators.battery import Battery
from simulators.charge_point import Plug, SimulatedChargePoint
from simulators.spt_sandbox import SptSandbox
from simulators.stripe_sandbox import SANDBOX_API_KEY, stripe_sandbox
from station.app import Station, running_station
from station.settings import Settings
from vehicle.agent import AgentEvent, ChargeOutcome, VehicleAgent
from vehicle.client import StationTarget
from vehicle.errors import NoDeal
from vehicle.goal import Goal
from vehicle.money import Money
from vehicle.signing import generate_keypair, public_key_b64
from vehicle.spt import StripeTokenIssuer
from vehicle.wallet import Instrument, MemoryLedger, SpendLimits, Wallet

CHARGE_POINTS = {
    "CP-A": "ocpp1.6",
    "CP-B": "ocpp2.0.1",
    "CP-C": "ocpp2.1",
    "CP-D": "ocpp1.6",
    "CP-E": "ocpp2.0.1",
    "CP-F": "ocpp2.1",
}


@dataclass(frozen=True)
class Driver:
    name: str
    charge_point_id: str
    energy_kwh: Decimal
    budget: str
    departure_in: timedelta | None
    battery_kwh: Decimal
    soc: Decimal
    expect: str  # "settled" or "no_deal"


D, H, M = Decimal, timedelta(hours=1), timedelta(minutes=1)
DRIVERS = (
    #      name            cp      kWh    budget   departure  battery  soc        expect
    Driver("commuter",     "CP-A", D(20), "15.00", 8 * H,     D(60),   D("0.2"),  "settled"),
    Driver("taxi",         "CP-B", D(25), "20.00", 40 * M,    D(75),   D("0.1"),  "settled"),
    Driver("delivery-van", "CP-C", D(30), "25.00", 3 * H,     D(90),   D("0.3"),  "settled"),
    Driver("weekend-trip", "CP-D", D(12), "10.00", None,      D(50),   D("0.5"),  "settled"),
    Driver("nearly-full",  "CP-E", D(30), "25.00", 2 * H,     D(40),   D("0.9"),  "settled"),
    Driver("shoestring",   "CP-F", D(30), "3.00",  1 * H,     D(60),   D("0.2"),  "no_deal"),
)  # fmt: skip


@dataclass
class Row:
    """What the demo shows of one driver, live and at the end."""

    driver: Driver
    version: str
    step: str = "waiting"
    energy_kwh: Decimal = Decimal(0)
    price_per_kwh: str = "-"
    cap: str = "-"
    captured: str = "-"
    released: str = "-"
    status: str = "-"
    verdict: str = "-"
    detail: str = ""
    rounds: int = 0
    energy_cost: str = "-"
    fees: str = "-"
    above_cap: str = "-"  # what the cap took off the cost (0 or negative)
    # Energy the charge point delivered and the capture did not pay for (its own meter
    # minus what was billed, plus what the cap cut, at the energy price), its money,
    # and the largest energy of one meter interval of the session.
    unbilled_kwh: Decimal = Decimal(0)
    unbilled: Decimal = Decimal(0)
    interval_kwh: Decimal = Decimal(0)

    @property
    def within_one_interval(self) -> bool:
        return self.unbilled_kwh <= self.interval_kwh

    @property
    def ended_as_expected(self) -> bool:
        if self.driver.expect == "no_deal":
            return self.status == "no_deal"
        return self.status == "settled" and self.verdict == "accepted" and self.within_one_interval

    def as_json(self) -> dict[str, Any]:
        return {
            "driver": self.driver.name,
            "charge_point_id": self.driver.charge_point_id,
            "ocpp_version": self.version,
            "price_per_kwh": self.price_per_kwh,
            "rounds": self.rounds,
            "energy_kwh": str(self.energy_kwh),
            "energy_cost": self.energy_cost,
            "fees": self.fees,
            "above_cap": self.above_cap,
            "unbilled_kwh": str(self.unbilled_kwh),
            "unbilled": str(self.unbilled),
            "interval_kwh": str(self.interval_kwh),
            "cap": self.cap,
            "captured": self.captured,
            "released": self.released,
            "status": self.status,
            "receipt": self.verdict,
            "expected": self.driver.expect,
            "ok": self.ended_as_expected,
            "detail": self.detail,
        }


@dataclass
class Report:
    rows: list[Row] = field(default_factory=list)
    currency: str = "usd"

    @property
    def ok(self) -> bool:
        return all(row.ended_as_expected for row in self.rows)

    def totals(self) -> dict[str, str]:
        def total(name: str) -> Decimal:
            return sum(
                (Decimal(getattr(r, name)) for r in self.rows if getattr(r, name) != "-"),
                Decimal(0),
            )

        return {
            "energy_kwh": str(sum((r.energy_kwh for r in self.rows), Decimal(0))),
            "captured": str(total("captured")),
            "released": str(total("released")),
            "currency": self.currency,
        }

    def unbilled_by_version(self) -> dict[str, dict[str, str]]:
        """The overshoot per OCPP version: energy delivered and not billed, and its money."""
        versions: dict[str, dict[str, str]] = {}
        for version in sorted({r.version for r in self.rows}):
            rows = [r for r in self.rows if r.version == version]
            versions[version] = {
                "kwh": str(sum((r.unbilled_kwh for r in rows), Decimal(0))),
                "money": str(sum((r.unbilled for r in rows), Decimal(0))),
            }
        return versions

    def as_json(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "sessions": [r.as_json() for r in self.rows],
            "totals": self.totals(),
            "unbilled_by_version": self.unbilled_by_version(),
        }


def _step(kind: str, data: dict[str, Any]) -> str:
    """What the agent is doing, in plain words."""
    price = data.get("price_per_kwh")
    if kind == "offer":
        return f"offered {price}/kWh (round {data.get('round')} of {data.get('max_rounds')})"
    if kind == "counter":
        return f"asks for {price}/kWh"
    if kind == "deal":
        return f"agreed on {price}/kWh, cap {data.get('cap')}"
    if kind == "walk_away":
        return "walks away: " + str(data.get("reason", "no deal within budget"))
    if kind == "challenge":
        return "asked to pay: a card hold of the cap"
    if kind == "paid":
        return "card hold placed"
    if kind == "chosen":
        return "charging starts"
    if kind == "meter":
        return "charging"
    if kind == "receipt":
        verdict = "adds up" if data.get("verdict") == "accepted" else "disputed"
        return f"receipt checked: {verdict}"
    if kind == "status" and isinstance(data.get("status"), str):
        return str(
            {"stopping": "stopping", "settled": "settled", "charging": "charging"}.get(
                data["status"], data["status"]
            )
        )
    if kind == "settled":
        return "settled"
    return kind.replace("_", " ")


def _on_event(row: Row, refresh: Callable[[], None]) -> Callable[[AgentEvent], None]:
    def handle(event: AgentEvent) -> None:
        data = event.data
        row.step = _step(event.kind, data)
        if event.kind == "offer" and isinstance(data.get("round"), int):
            row.rounds = data["round"]
        if event.kind == "deal":
            row.price_per_kwh = str(data.get("price_per_kwh", "-"))
            row.cap = str(data.get("cap", "-"))
        if "energy_kwh" in data:
            with contextlib.suppress(ArithmeticError, TypeError, ValueError):
                row.energy_kwh = Decimal(str(data["energy_kwh"]))
        if "status" in data and isinstance(data["status"], str):
            row.status = data["status"]
        refresh()

    return handle


def _record(row: Row, outcome: ChargeOutcome) -> None:
    session, verdict = outcome.session, outcome.verdict
    row.rounds = outcome.deal.rounds
    row.price_per_kwh = str(outcome.deal.accept.offer.tariff.energy_price_per_kwh)
    row.cap = outcome.deal.accept.cap.to_wire()
    row.status = session.status
    row.energy_kwh = session.energy_kwh
    row.step = "done"
    if verdict is not None and verdict.body is not None:
        body = verdict.body
        row.energy_kwh = body.energy_kwh
        row.captured = str(body.captured)
        row.released = str(body.released)

        def total(kinds: set[str], *, inside: bool = True) -> Decimal:
            lines = [x.amount for x in body.cost_lines if (x.kind in kinds) == inside]
            return sum(lines, Decimal(0))

        row.energy_cost = str(total({"energy"}))
        row.fees = str(total({"energy", "cap", "maximum"}, inside=False))
        row.above_cap = str(total({"cap", "maximum"}))
    if verdict is not None:
        row.verdict = verdict.kind
        row.detail = "; ".join(verdict.reasons)


def _unbilled(row: Row, plug: Plug) -> None:
    """What the charge point's meter says it gave away, against one meter interval."""
    delivered = Decimal(plug.energy_wh or 0) / 1000
    steps = [b - a for a, b in itertools.pairwise(plug.readings_wh)]
    row.interval_kwh = Decimal(max(steps, default=0)) / 1000
    if row.price_per_kwh == "-" or row.above_cap == "-":
        return
    price = Decimal(row.price_per_kwh)
    cut = -Decimal(row.above_cap)  # the cost the cap took off
    past_cap = min(cut / price, row.energy_kwh) if price > 0 else Decimal(0)
    never_billed = max(delivered - row.energy_kwh, Decimal(0))
    row.unbilled_kwh = (never_billed + past_cap).quantize(Decimal("0.001"))
    row.unbilled = (cut + never_billed * price).quantize(Decimal("0.01"))
    if not row.within_one_interval:
        row.detail = (
            f"{row.unbilled_kwh} kWh ({row.unbilled}) delivered and not billed:"
            f" more than one meter interval ({row.interval_kwh} kWh)"
        )


async def _register(
    base_url: str, admin_token: str, password: str, keys: dict[str, Any]
) -> dict[str, str]:
    headers = {"Authorization": f"Bearer {admin_token}", "X-Chargepay-Operator": "demo"}
    agent_ids: dict[str, str] = {}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=10) as admin:
        for cp in CHARGE_POINTS:
            response = await admin.post(
                "/v1/admin/charge-points", json={"charge_point_id": cp, "password": password}
            )
            response.raise_for_status()
        for driver in DRIVERS:
            response = await admin.post(
                "/v1/admin/agents",
                json={
                    "name": driver.name,
                    "public_key": public_key_b64(keys[driver.name]),
                    "currency": "usd",
                    "limit_per_session": "50.00",
                    "limit_per_window": "200.00",
                    "window_hours": 24,
                },
            )
            response.raise_for_status()
            agent_ids[driver.name] = response.json()["agent_id"]
    return agent_ids


async def _drive(
    station: Station,
    driver: Driver,
    agent_id: str,
    key: Ed25519PrivateKey,
    row: Row,
    plug: Plug,
    refresh: Callable[[], None],
) -> None:
    base_url = f"http://127.0.0.1:{station.http_port}"
    # Each payment is a token issued for its challenge (spt_…), as production agents pay.
    issuer = StripeTokenIssuer(
        SANDBOX_API_KEY, "pm_card_visa", api_base=str(station.settings.stripe_api_base)
    )
    wallet = Wallet(
        Instrument("pm_card_visa"),
        SpendLimits(Money.parse("40.00", "usd"), Money.parse("100.00", "usd")),
        MemoryLedger(),
        issuer=issuer,
    )
    goal = Goal(
        energy_kwh=driver.energy_kwh,
        budget=Money.parse(driver.budget, "usd"),
        departure_at=datetime.now(UTC) + driver.departure_in if driver.departure_in else None,
        max_power_kw=Decimal(150),
    )
    target = StationTarget(base_url, driver.charge_point_id, 1)
    async with VehicleAgent(
        agent_id, key, wallet, on_event=_on_event(row, refresh), poll_interval_s=0.2
    ) as agent:
        try:
            outcome = await agent.charge(goal, [target])
        except NoDeal as exc:
            row.status, row.step, row.detail = "no_deal", "walked away: no deal", str(exc)
            return
        except Exception as exc:  # any other ending is shown, and fails the demo
            row.status, row.step, row.detail = "error", "error", f"{type(exc).__name__}: {exc}"
            return
    _record(row, outcome)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(plug.ended.wait(), 10)
    _unbilled(row, plug)
    refresh()


async def run_demo(
    refresh: Callable[[Report], None], *, time_scale: float = 600, workdir: Path | None = None
) -> Report:
    """Run the whole demo; `refresh` is called with the report whenever something moves."""
    report = Report(rows=[Row(d, CHARGE_POINTS[d.charge_point_id]) for d in DRIVERS])

    def phase(step: str) -> None:
        for row in report.rows:
            row.step = step
        refresh(report)

    phase("starting the Stripe sandbox")
    password = secrets.token_urlsafe(18)[:24]
    admin_token = secrets.token_urlsafe(24)
    keys = {d.name: generate_keypair()[0] for d in DRIVERS}
    async with contextlib.AsyncExitStack() as stack:
        tmp = workdir or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        stripe_url = stack.enter_context(stripe_sandbox())
        # The cars pay with Shared Payment Tokens, issued by the sandbox's SPT layer.
        tokens = await stack.enter_async_context(SptSandbox(stripe_url).running())
        phase("starting the station")
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{tmp / 'demo.db'}",
            http_port=0,
            ocpp_port=0,
            admin_token=SecretStr(admin_token),
            secret_key=SecretStr(secrets.token_urlsafe(32)),
            stripe_api_key=SecretStr(SANDBOX_API_KEY),
            stripe_api_base=tokens.url,
            log_level="WARNING",
        )
        async with running_station(settings) as station, contextlib.AsyncExitStack() as sims:
            base_url = f"http://127.0.0.1:{station.http_port}"
            phase("registering the charge point and the car")
            agent_ids = await _register(base_url, admin_token, password, keys)
            phase("charge point connecting")
            simulated: dict[str, SimulatedChargePoint] = {}
            for cp, version in CHARGE_POINTS.items():
                sim = SimulatedChargePoint(
                    f"ws://127.0.0.1:{station.ocpp_port}/ocpp",
                    cp,
                    password=password,
                    version=version,
                    time_scale=time_scale,
                    meter_interval_s=60,
                    charger_max_kw=150,
                )
                simulated[cp] = await sims.enter_async_context(sim)
            plugs: dict[str, Plug] = {}
            for driver, row in zip(DRIVERS, report.rows, strict=True):
                row.step = "car plugged in, bargaining"
                plugs[driver.name] = simulated[driver.charge_point_id].plug_in(
                    1, Battery(capacity_kwh=driver.battery_kwh, soc=driver.soc)
                )
            async with asyncio.TaskGroup() as drivers:
                for driver, row in zip(DRIVERS, report.rows, strict=True):
                    drivers.create_task(
                        _drive(
                            station,
                            driver,
                            agent_ids[driver.name],
                            keys[driver.name],
                            row,
                            plugs[driver.name],
                            lambda: refresh(report),
                        )
                    )
    return report
