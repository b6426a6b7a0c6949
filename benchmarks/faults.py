"""The fault campaign: paid sessions through an operator's bad week, then every invariant.

    python -m benchmarks.faults [--sessions 300] [--minutes 9] [--database postgres|sqlite]
                                [--charge-points N] [--kills 40] [--outages 25] [--seed 1]

Runs localstripe behind `simulators.stripe_proxy.StripeProxy` (Stripe's
idempotency rule: the same key with other parameters is a 400
idempotency_error), the station as its own process (``python -m station
serve``) on a fresh SQLite file or PostgreSQL database, and simulated charge
points of all three OCPP versions, each with a signed agent that negotiates,
pays the 402, charges and sometimes stops early. Meanwhile it:

- SIGKILLs and restarts the station: at random moments, and at each Stripe
  step — while a hold, capture or cancel is in flight (the proxy forwards
  the request to Stripe, then the station dies before it hears the answer),
  right after a settlement intent is committed and right after a capture
  (the station's ``fault_inject`` crash points);
- injects Stripe outages through the proxy: requests that hang, connections
  refused, 500 answers, requests forwarded and their answers dropped, and
  Stripe unreachable for a few seconds;
- on PostgreSQL, cuts the database away (a TCP relay that resets every
  connection and refuses new ones for a few seconds). SQLite is a file in
  the station's own process: there is no outage of it to inject short of
  the kills, which the campaign does on both.

Pacing: the session starts are spread evenly over the first `DRIVING_SHARE`
of the minutes (session n starts no earlier than n × that span / sessions), so
the sessions last as long as the fault schedule does (let loose, they ran out in
2-5 of 9 minutes, and 7 of 40 kills, 5 of 27 outages happened); a fault waits
until the station has served for `MIN_UPTIME_S` since its last start (kills
drawn close together would otherwise keep it restarting and no session would
get through); the charge points default to one per 25 sessions (at least 6).
The printout says how many of the planned kills and outages ran.

At the end it clears every fault, restarts the station cleanly, asks the
agents to stop what still runs, lets the reconciler finish, and checks the
invariants against localstripe's own PaymentIntents (not the station's
word), printing the table. Exit status 1 if any count is not zero.

Unbilled energy is what the charge point delivered (its own meter) minus
what the session billed, plus the part of the billed energy the capture did
not pay for (cost above the cap, pro rata); a session counts when that is
more than one meter interval at the charger's power.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import signal
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import asyncpg
import httpx
import mpp
import stripe
from sqlalchemy import select

from simulators.battery import Battery
from simulators.charge_point import Plug, SimulatedChargePoint
from simulators.ports import free_port
from simulators.stripe_proxy import Fault, StripeProxy
from simulators.stripe_sandbox import SANDBOX_API_KEY, async_stripe_sandbox
from simulators.tcp_relay import TcpRelay
from station.domain.session import SessionStatus
from station.store.db import Database
from station.store.payments import SessionRow
from vehicle.payer import parse_challenge
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64

VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
ADMIN_TOKEN = "faults-admin-token-0123456789"
PASSWORD = "faults-password-000001"
PG_DSN = os.environ.get("CHARGEPAY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
TIME_SCALE = 600
METER_INTERVAL_S = 60
CHARGER_KW = Decimal(50)
STRIPE_TIMEOUT_S = 2.0
# A fault waits until the station has served this long since its last start.
MIN_UPTIME_S = 4.0
SESSIONS_PER_CHARGE_POINT = 25
# How long a kill timed for a Stripe call in flight waits for one to go by.
IN_FLIGHT_WAIT_S = 15.0
# The session starts are spread over this share of the minutes (the rest lets the last
# ones charge, under the faults still to come).
DRIVING_SHARE = 0.8
KILL_POINTS = (
    "random",
    "hold_in_flight",
    "capture_in_flight",
    "cancel_in_flight",
    "after_settlement_intent",
    "after_capture",
)
STRIPE_OUTAGES = ("hang", "refuse", "500", "forward_then_drop", "unreachable")


@dataclass
class Tally:
    sessions_started: int = 0
    accepted: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    kills: Counter[str] = field(default_factory=Counter)
    outages: Counter[str] = field(default_factory=Counter)
    restarts: int = 0
    kills_planned: int = 0
    outages_planned: int = 0


class Pacer:
    """Session n may start from `began` + n × `spacing_s` on (a start late is not made up)."""

    def __init__(self, sessions: int, span_s: float, began: float) -> None:
        self.left = sessions
        self.spacing_s = span_s / max(sessions, 1)
        self._began = began
        self._issued = 0

    async def turn(self) -> bool:
        """Wait for the next session's time; False when the budget is spent."""
        if self.left <= 0:
            return False
        self.left -= 1
        at = self._began + self._issued * self.spacing_s
        self._issued += 1
        await asyncio.sleep(max(0.0, at - time.monotonic()))
        return True


# -- the station as a process ------------------------------------------------------------


class StationProcess:
    """Owns the station process: start, kill, restart on exit until stopped."""

    def __init__(self, env: dict[str, str], http_port: int, log: Path) -> None:
        self._env = env
        self.http_port = http_port
        self._log = log
        self.proc: asyncio.subprocess.Process | None = None
        self.next_fault: str | None = None
        self.running = asyncio.Event()
        self.up_since = time.monotonic()
        self._stopping = False
        self.restarts = 0

    async def _start(self) -> None:
        env = dict(self._env)
        if self.next_fault:
            env["CHARGEPAY_FAULT_INJECT"], self.next_fault = self.next_fault, None
        with self._log.open("ab") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "station", "serve", env=env, stdout=out, stderr=out
            )
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and self.proc.returncode is None:
                with contextlib.suppress(httpx.TransportError):
                    health = await client.get(f"http://127.0.0.1:{self.http_port}/healthz")
                    if health.status_code == 200:
                        self.up_since = time.monotonic()
                        self.running.set()
                        return
                await asyncio.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL now (safe to call from a callback; the supervisor restarts it)."""
        self.running.clear()
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGKILL)

    async def supervise(self) -> None:
        while not self._stopping:
            await self._start()
            assert self.proc is not None
            await self.proc.wait()
            self.running.clear()
            if not self._stopping:
                self.restarts += 1
                await asyncio.sleep(random.uniform(0.2, 1.5))

    async def stop(self) -> None:
        self._stopping = True
        self.running.clear()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 20)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()


# -- agents and drivers ------------------------------------------------------------------


@dataclass
class Driver:
    cp: SimulatedChargePoint
    agent_id: str
    http: httpx.AsyncClient
    plugs: list[Plug] = field(default_factory=list)
    sessions: list[str] = field(default_factory=list)


async def _retrying(call: Any, station: StationProcess, until: float) -> httpx.Response | None:
    """An HTTP call that rides over station restarts (connection errors) until `until`."""
    while time.monotonic() < until:
        await station.running.wait()
        try:
            return await call()
        except (httpx.TransportError, httpx.TimeoutException):
            await asyncio.sleep(0.3)
    return None


def _credential(www_authenticate: str) -> str:
    challenge = parse_challenge(www_authenticate, ("authorize",))
    return mpp.Credential(
        challenge=challenge.to_echo(), payload={"payment_method": "pm_card_visa"}
    ).to_authorization()


async def _one_session(
    driver: Driver, station: StationProcess, tally: Tally, rng: random.Random, until: float
) -> None:
    cp, http = driver.cp, driver.http
    await asyncio.wait_for(cp.booted.wait(), 120)
    want = Decimal(rng.choice(("3", "5", "8", "12")))
    capacity = Decimal(60)
    soc = Decimal(rng.choice(("0.1", "0.3", "0.5")))
    plug = cp.plug_in(
        1,
        Battery(capacity_kwh=capacity, soc=soc, target_soc=min(soc + want / capacity, Decimal(1))),
    )
    driver.plugs.append(plug)
    tally.sessions_started += 1
    cap = rng.choice(("3.00", "5.00", "8.00", "15.00"))
    neg = await _retrying(
        lambda: http.post(
            "/v1/negotiations",
            json={"charge_point_id": cp.charge_point_id, "evse_id": 1, "energy_kwh": str(want)},
        ),
        station,
        until,
    )
    session_id: str | None = None
    if neg is not None and neg.status_code == 201:
        body = neg.json()
        path = f"/v1/negotiations/{body['negotiation_id']}/accept"
        terms = {"offer_id": body["offer"]["offer_id"], "cap": cap}
        first = await _retrying(lambda: http.post(path, json=terms), station, until)
        if first is not None and first.status_code == 402:
            paid: httpx.Response | None = first
            for _ in range(3):  # a credential spent by a try the station died in: pay anew
                assert paid is not None
                auth = _credential(paid.headers["www-authenticate"])
                paid = await _retrying(
                    lambda a=auth: http.post(path, json=terms, headers={"Authorization": a}),
                    station,
                    until,
                )
                if paid is None or paid.status_code != 402:
                    break
            if paid is not None and paid.status_code == 201:
                session_id = paid.json()["session_id"]
                tally.accepted += 1
            else:
                tally.refused[str(paid.status_code if paid is not None else "no answer")] += 1
        else:
            tally.refused[f"challenge {first.status_code if first else 'no answer'}"] += 1
    else:
        tally.refused[f"negotiate {neg.status_code if neg else 'no answer'}"] += 1
    if session_id is None:
        # Perhaps started anyway (the answer was lost): give it a moment, else leave.
        await asyncio.sleep(1.0)
        if not plug.started.is_set():
            cp.unplug(1)
            return
    else:
        driver.sessions.append(session_id)
    if session_id is not None and rng.random() < 0.3:  # the driver leaves early
        await asyncio.sleep(rng.uniform(0.2, 1.5))
        await _retrying(lambda: http.post(f"/v1/sessions/{session_id}/stop"), station, until)
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(plug.ended.wait(), max(1.0, until - time.monotonic()))
    if not plug.ended.is_set():
        cp.stop(1)  # the campaign is over: the driver unplugs
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(plug.ended.wait(), 60)


async def _drive(
    driver: Driver,
    station: StationProcess,
    tally: Tally,
    rng: random.Random,
    pacer: Pacer,
    until: float,
) -> None:
    while time.monotonic() < until:
        if not await pacer.turn() or time.monotonic() >= until:
            return
        try:
            await _one_session(driver, station, tally, rng, until)
        except Exception as exc:  # a driver's own trouble is counted, never fatal
            tally.refused[f"driver {type(exc).__name__}"] += 1
            await asyncio.sleep(0.5)


# -- faults ------------------------------------------------------------------------------


async def _chaos(
    station: StationProcess,
    proxy: StripeProxy,
    relay: TcpRelay | None,
    tally: Tally,
    rng: random.Random,
    kills: int,
    outages: int,
    until: float,
    min_uptime_s: float = MIN_UPTIME_S,
) -> None:
    tally.kills_planned, tally.outages_planned = kills, outages
    start = time.monotonic()
    span = max(until - start - 5, 1)
    events = [
        (rng.uniform(2, span), "kill", KILL_POINTS[i % len(KILL_POINTS)]) for i in range(kills)
    ]
    kinds = list(STRIPE_OUTAGES) + (["database"] if relay is not None else [])
    events += [(rng.uniform(2, span), "outage", kinds[i % len(kinds)]) for i in range(outages)]
    events.sort()
    for at, kind, what in events:
        await asyncio.sleep(max(0.0, start + at - time.monotonic()))
        if time.monotonic() >= until:
            return
        await station.running.wait()
        # Let it serve a while first: sessions must get through between the faults.
        while (wait := station.up_since + min_uptime_s - time.monotonic()) > 0:
            await asyncio.sleep(wait)
            await station.running.wait()
        if time.monotonic() >= until:
            return
        if kind == "kill":
            await _kill(station, proxy, tally, what, until)
        else:
            await _outage(proxy, relay, tally, rng, what)


async def _kill(
    station: StationProcess, proxy: StripeProxy, tally: Tally, point: str, until: float
) -> None:
    tally.kills[point] += 1
    if point == "random":
        station.kill()
    elif point.endswith("_in_flight"):
        operation = {"hold": "authorize", "capture": "capture", "cancel": "cancel"}[
            point.removesuffix("_in_flight")
        ]
        armed = asyncio.get_running_loop().create_future()

        def on_forwarded(op: str) -> None:
            if op == operation and not armed.done():
                station.kill()
                armed.set_result(None)

        proxy.on_forwarded = on_forwarded
        with contextlib.suppress(TimeoutError):  # paced sessions send one every few s
            await asyncio.wait_for(armed, max(0.1, min(IN_FLIGHT_WAIT_S, until - time.monotonic())))
        proxy.on_forwarded = None
        if not armed.done():
            tally.kills[point] -= 1  # nothing of that kind went by: not counted
            tally.kills[f"{point} (none in flight)"] += 1
    else:
        station.next_fault = (
            "crash_after_capture_intent"
            if point == "after_settlement_intent"
            else "crash_after_capture"
        )
        station.kill()  # restarted with the crash point armed; it dies there, once
    await asyncio.sleep(0.5)


async def _outage(
    proxy: StripeProxy, relay: TcpRelay | None, tally: Tally, rng: random.Random, what: str
) -> None:
    tally.outages[what] += 1
    count = rng.randint(1, 4)
    if what == "hang":
        proxy.fault(Fault.HANG, times=count)
    elif what == "refuse":
        proxy.fault(Fault.REFUSE, times=count)
    elif what == "500":
        proxy.fault(Fault.ERROR_500, times=count)
    elif what == "forward_then_drop":
        proxy.fault(Fault.FORWARD_THEN_DROP, times=count)
    elif what == "unreachable":
        proxy.down()
        await asyncio.sleep(rng.uniform(2, 8))
        proxy.up()
    elif what == "database" and relay is not None:
        relay.down()
        await asyncio.sleep(rng.uniform(1, 5))
        relay.up()


# -- the check ---------------------------------------------------------------------------


@dataclass
class Verdict:
    rows: list[tuple[str, int]]
    settled: int
    captured_cents: int
    detail: list[str]

    @property
    def ok(self) -> bool:
        return all(count == 0 for _, count in self.rows)


def _captured_in_stripe(doc: dict[str, Any]) -> int:
    if doc.get("status") != "succeeded":
        return 0
    received = doc.get("amount_received")
    if isinstance(received, int):
        return received
    charges = (doc.get("charges") or {}).get("data") or []
    return sum(int(c.get("amount", 0)) - int(c.get("amount_refunded", 0)) for c in charges)


async def _check(
    database_url: str, stripe_url: str, drivers: list[Driver], station: StationProcess
) -> Verdict:
    client = stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": stripe_url})
    intents = [
        i.to_dict() for i in client.v1.payment_intents.list({"limit": 100}).auto_paging_iter()
    ]
    by_session: dict[str, list[dict[str, Any]]] = {}
    for intent in intents:
        by_session.setdefault(intent.get("metadata", {}).get("session_id", ""), []).append(intent)
    db = Database(database_url)
    try:
        async with db.reader() as session:
            rows = (await session.scalars(select(SessionRow))).all()
            session.expunge_all()
    finally:
        await db.dispose()
    sessions = {row.session_id: row for row in rows}
    by_token = {row.id_token: row for row in rows}
    detail: list[str] = []

    double = [
        s for s, pis in by_session.items() if sum(_captured_in_stripe(p) > 0 for p in pis) > 1
    ]
    above = [p["id"] for p in intents if _captured_in_stripe(p) > int(p["amount"])]
    open_holds = [p for p in intents if p["status"] == "requires_capture"]
    open_cents = sum(int(p["amount"]) for p in open_holds)
    not_terminal = [r for r in rows if not SessionStatus(r.status).final]
    detail += [f"open hold {p['id']} session {p['metadata'].get('session_id')}" for p in open_holds]
    detail += [f"not terminal {r.session_id} {r.status}/{r.payment_status}" for r in not_terminal]

    interval_wh = CHARGER_KW * 1000 * METER_INTERVAL_S / 3600
    unbilled: list[str] = []
    for driver in drivers:
        for plug in driver.plugs:
            delivered = Decimal(plug.energy_wh or 0)
            if delivered <= 0:
                continue
            row = by_token.get(plug.id_token or "")
            if row is None:
                unbilled.append(f"{driver.cp.charge_point_id} {delivered} Wh with no session")
                continue
            billed = row.energy_wh
            unpaid = delivered - billed
            captured = row.captured or Decimal(0)
            if row.cost > 0 and captured < row.cost:
                unpaid += billed * (row.cost - captured) / row.cost
            if unpaid > interval_wh:
                unbilled.append(
                    f"{row.session_id} {row.status} ({row.stop_reason}) on"
                    f" {driver.cp.charge_point_id} transaction {plug.transaction_id}:"
                    f" delivered {delivered} Wh, billed {billed} Wh,"
                    f" cost {row.cost} captured {captured}"
                )
    detail += [f"unbilled {u}" for u in unbilled]

    agents = {d.agent_id: d.http for d in drivers}
    mismatched: list[str] = []
    settled = cents = 0
    for row in rows:
        pis = by_session.get(row.session_id, [])
        in_stripe = sum(_captured_in_stripe(p) for p in pis)
        in_db = int((row.captured or Decimal(0)) * 100) if row.status == "settled" else 0
        if row.status != "settled":
            if in_stripe:
                mismatched.append(f"{row.session_id} {row.status} but {in_stripe} captured")
            continue
        settled += 1
        cents += in_db
        receipt = await _retrying(
            lambda r=row: agents[r.agent_id].get(f"/v1/sessions/{r.session_id}/receipt"),
            station,
            time.monotonic() + 30,
        )
        on_receipt = (
            int(Decimal(receipt.json()["captured"]) * 100)
            if receipt is not None and receipt.status_code == 200
            else -1
        )
        if not in_db == in_stripe == on_receipt:
            mismatched.append(
                f"{row.session_id} db {in_db} stripe {in_stripe} receipt {on_receipt}"
            )
    detail += [f"mismatch {m}" for m in mismatched]
    orphans = [s for s in by_session if s and s not in sessions]
    detail += [f"payment intent for unknown session {s}" for s in orphans]
    return Verdict(
        rows=[
            ("double captures", len(double)),
            ("captures above a hold", len(above)),
            (f"holds left open (${Decimal(open_cents) / 100})", len(open_holds)),
            ("sessions not terminal", len(not_terminal)),
            ("unbilled sessions beyond one meter interval", len(unbilled)),
            ("settled sessions where database ≠ Stripe ≠ receipt", len(mismatched)),
        ],
        settled=settled,
        captured_cents=cents,
        detail=detail,
    )


# -- the run -----------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def _database(kind: str, workdir: Path) -> AsyncIterator[tuple[str, str, TcpRelay | None]]:
    """(URL for the station, URL for the check, relay or None)."""
    if kind == "sqlite":
        url = f"sqlite+aiosqlite:///{workdir / 'faults.db'}"
        yield url, url, None
        return
    name = f"chargepay_faults_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    host_port, user = (
        PG_DSN.split("@", 1)[1].split("/", 1)[0],
        PG_DSN.split("//", 1)[1].split("@")[0],
    )
    host, _, port = host_port.partition(":")
    try:
        async with TcpRelay(host, int(port or 5432)).running() as relay:
            direct = f"postgresql+asyncpg://{user}@{host_port}/{name}"
            yield f"postgresql+asyncpg://{user}@127.0.0.1:{relay.port}/{name}", direct, relay
    finally:
        conn = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await conn.close()


async def _register(base: str, drivers: int, station: StationProcess) -> list[tuple[str, Any]]:
    agents = []
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as admin:
        for n in range(drivers):
            await station.running.wait()
            r = await admin.post(
                "/v1/admin/charge-points", json={"charge_point_id": f"CP-{n}", "password": PASSWORD}
            )
            assert r.status_code == 201, r.text
            key, _ = generate_keypair()
            r = await admin.post(
                "/v1/admin/agents",
                json={
                    "name": f"car-{n}",
                    "public_key": public_key_b64(key),
                    "currency": "usd",
                    "limit_per_session": "50.00",
                    "limit_per_window": "1000000.00",
                    "window_hours": 24,
                },
            )
            assert r.status_code == 201, r.text
            agents.append((r.json()["agent_id"], key))
    return agents


async def run_campaign(
    *,
    sessions: int,
    minutes: float,
    database: str = "sqlite",
    charge_points: int | None = None,
    kills: int | None = None,
    outages: int | None = None,
    seed: int = 1,
    settle_timeout_s: float = 120,
    workdir: Path | None = None,
    log_level: str = "INFO",
    out: IO[str] | None = None,
    min_uptime_s: float = MIN_UPTIME_S,
    driving_share: float = DRIVING_SHARE,
) -> tuple[Verdict, Tally]:
    """The campaign; `driving_share` of the minutes is what the session starts are spread
    over (0: every charge point starts its next session as soon as its last one is over)."""
    out = out or sys.stdout
    rng = random.Random(seed)
    charge_points = charge_points or max(6, -(-sessions // SESSIONS_PER_CHARGE_POINT))
    kills = kills if kills is not None else max(6, int(minutes * 4.5))
    outages = outages if outages is not None else max(5, int(minutes * 3))
    tally = Tally()
    # The run's directory keeps the station's log (and the SQLite file): it is what says
    # why a count is not zero.
    tmp = workdir or Path(tempfile.mkdtemp(prefix="chargepay-faults-"))
    tmp.mkdir(parents=True, exist_ok=True)
    log_path = tmp / "station.log"
    print(f"station log: {log_path}", file=out, flush=True)
    async with (
        async_stripe_sandbox() as stripe_url,
        StripeProxy(stripe_url).running() as proxy,
        _database(database, tmp) as (station_url, check_url, relay),
    ):
        http_port, ocpp_port = free_port(), free_port()
        env = {
            **os.environ,
            "CHARGEPAY_DATABASE_URL": station_url,
            "CHARGEPAY_HTTP_PORT": str(http_port),
            "CHARGEPAY_OCPP_PORT": str(ocpp_port),
            "CHARGEPAY_LOG_LEVEL": log_level,
            "CHARGEPAY_LOG_FORMAT": "text",
            "CHARGEPAY_ADMIN_TOKEN": ADMIN_TOKEN,
            "CHARGEPAY_SECRET_KEY": "faults-secret-key-0123456789abcdef",
            "CHARGEPAY_STRIPE_API_KEY": SANDBOX_API_KEY,
            "CHARGEPAY_STRIPE_API_BASE": proxy.url,
            "CHARGEPAY_STRIPE_TIMEOUT_S": str(STRIPE_TIMEOUT_S),
            "CHARGEPAY_RECONCILE_INTERVAL_S": "1",
            "CHARGEPAY_SESSION_START_TIMEOUT_S": "15",
            "CHARGEPAY_SESSION_STOP_TIMEOUT_S": "30",
            "CHARGEPAY_OCPP_CALL_TIMEOUT_S": "5",
        }
        env.pop("CHARGEPAY_FAULT_INJECT", None)
        station = StationProcess(env, http_port, log_path)
        base = f"http://127.0.0.1:{http_port}"
        async with asyncio.TaskGroup() as tasks:
            supervisor = tasks.create_task(station.supervise())
            await asyncio.wait_for(station.running.wait(), 90)
            agents = await _register(base, charge_points, station)
            drivers: list[Driver] = []
            async with contextlib.AsyncExitStack() as sims:
                for n, (agent_id, key) in enumerate(agents):
                    cp = SimulatedChargePoint(
                        f"ws://127.0.0.1:{ocpp_port}/ocpp", f"CP-{n}", PASSWORD,
                        VERSIONS[n % len(VERSIONS)], time_scale=TIME_SCALE,
                        meter_interval_s=METER_INTERVAL_S, charger_max_kw=CHARGER_KW,
                        reconnect_max_s=0.5, call_timeout_s=10,
                    )  # fmt: skip
                    await sims.enter_async_context(cp)
                    http = await sims.enter_async_context(
                        httpx.AsyncClient(
                            base_url=base, auth=AgentSigner(agent_id, key), timeout=20
                        )
                    )
                    drivers.append(Driver(cp, agent_id, http))
                until = time.monotonic() + minutes * 60
                began = time.monotonic()
                pacer = Pacer(sessions, minutes * 60 * driving_share, began)
                chaos = asyncio.create_task(
                    _chaos(station, proxy, relay, tally, rng, kills, outages, until, min_uptime_s)
                )
                try:
                    async with asyncio.TaskGroup() as campaign:
                        for driver in drivers:
                            campaign.create_task(
                                _drive(driver, station, tally, random.Random(rng.random()),
                                       pacer, until)
                            )  # fmt: skip
                finally:
                    chaos.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await chaos
                driving_s = time.monotonic() - began
                print(f"driving done in {driving_s:.0f} s; settling", file=out, flush=True)
                # The end: faults off, a clean station, stop what still runs, settle.
                proxy.clear()
                proxy.on_forwarded = None
                proxy.up()
                if relay is not None:
                    relay.up()
                await _settle_everything(drivers, station, check_url, settle_timeout_s)
                verdict = await _check(check_url, stripe_url, drivers, station)
            await station.stop()
            supervisor.cancel()
        tally.restarts = station.restarts
        _print(verdict, tally, database, sessions, minutes, proxy, out)
        if not verdict.ok:
            _print_log_of(verdict, log_path, out)
    return verdict, tally


async def _settle_everything(
    drivers: list[Driver], station: StationProcess, database_url: str, timeout_s: float
) -> None:
    """Ask every session still open to stop, and wait for each to reach a terminal state."""
    deadline = time.monotonic() + timeout_s
    asked: set[str] = set()
    while time.monotonic() < deadline:
        db = Database(database_url)
        try:
            async with db.reader() as session:
                open_ = (
                    await session.execute(
                        select(SessionRow.session_id, SessionRow.agent_id).where(
                            SessionRow.status.not_in([s.value for s in SessionStatus if s.final])
                        )
                    )
                ).all()
        finally:
            await db.dispose()
        if not open_:
            return
        clients = {d.agent_id: d.http for d in drivers}
        for session_id, agent_id in open_:
            if session_id not in asked:
                asked.add(session_id)
                with contextlib.suppress(httpx.HTTPError):
                    await station.running.wait()
                    await clients[agent_id].post(f"/v1/sessions/{session_id}/stop")
        await asyncio.sleep(1)


def _print_log_of(verdict: Verdict, log_path: Path, out: IO[str], limit: int = 60) -> None:
    """The station's log lines about each session a count names (the first `limit`)."""
    named = {word for line in verdict.detail for word in line.split() if word.startswith("ses_")}
    if not named or not log_path.exists():
        return
    with log_path.open(errors="replace") as log:
        for session_id in sorted(named):
            lines = [line.rstrip() for line in log if session_id in line]
            log.seek(0)
            print(f"\n{log_path}, {session_id} ({len(lines)} lines):", file=out)
            for line in lines[:limit]:
                print(f"  {line}", file=out)


def _print(
    verdict: Verdict,
    tally: Tally,
    database: str,
    sessions: int,
    minutes: float,
    proxy: StripeProxy,
    out: IO[str],
) -> None:
    p = lambda *a: print(*a, file=out)  # noqa: E731
    p(f"\nfault campaign on {database}: {tally.sessions_started} sessions attempted"
      f" (budget {sessions}, {minutes:g} min), {tally.accepted} accepted with a hold")  # fmt: skip
    killed = sum(n for point, n in tally.kills.items() if not point.endswith("in flight)"))
    p(f"station SIGKILLs: {killed} of {tally.kills_planned} planned"
      f" ({dict(sorted(tally.kills.items()))}); restarts {tally.restarts}")  # fmt: skip
    p(f"outages: {sum(tally.outages.values())} of {tally.outages_planned} planned"
      f" ({dict(sorted(tally.outages.items()))})")  # fmt: skip
    p(f"Stripe faults hit: {dict(sorted(proxy.faults.items()))}; idempotency errors"
      f" {proxy.idempotency_errors}, stored answers replayed {proxy.replayed}")  # fmt: skip
    if tally.refused:
        p(f"accepts not completed: {dict(sorted(tally.refused.items()))}")
    p("\n| invariant | count |\n| --- | ---: |")
    for name, count in verdict.rows:
        p(f"| {name} | {count} |")
    p(f"\nsettled sessions: {verdict.settled}, captured {verdict.captured_cents} cents"
      " (database = Stripe = receipt for each)" if verdict.ok else "")  # fmt: skip
    for line in verdict.detail[:40]:
        p(f"  {line}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=300)
    parser.add_argument("--minutes", type=float, default=9)
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--charge-points", type=int, default=None, help="default: one per 25 sessions, >= 6"
    )
    parser.add_argument(
        "--kills", type=int, default=None, help="station SIGKILLs (default ~4.5/min)"
    )
    parser.add_argument("--outages", type=int, default=None, help="outages (default ~3/min)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--settle-timeout", type=float, default=120)
    parser.add_argument(
        "--workdir", type=Path, default=None,
        help="the run's directory, kept: the station's log (default: a new temporary one)",
    )  # fmt: skip
    parser.add_argument("--log-level", default="INFO", help="the station's log level")
    args = parser.parse_args()
    verdict, _ = asyncio.run(
        run_campaign(
            sessions=args.sessions,
            minutes=args.minutes,
            database=args.database,
            charge_points=args.charge_points,
            kills=args.kills,
            outages=args.outages,
            seed=args.seed,
            settle_timeout_s=args.settle_timeout,
            workdir=args.workdir,
            log_level=args.log_level,
        )
    )
    sys.exit(0 if verdict.ok else 1)


if __name__ == "__main__":
    main()
