"""OCPP throughput, latency and memory: the station against two baselines.

    python -m benchmarks.ocpp_throughput [--charge-points 50] [--duration 10]
                                         [--rounds 3] [--idle 5000] [--skip-idle] [--paid]

Runs each server in turn, for several rounds, as its own process on loopback
while this process drives it with N charge points sending TransactionEvent
frames as fast as answers come back:

- bare:    a bare `websockets` server answering an empty CALLRESULT;
- plain:   a central system written the plain way with the `ocpp` library;
- station: `chargepay serve` with validation and persistence (SQLite file);
- paid (``--paid``): the same station, every transaction a paid session: a
  signed agent per charge point negotiates and pays (402, a test card), the
  cap is held in localstripe, the station starts the charge point, bills
  each reading, pushes CostUpdated and settles (captures) at the end.

Prints messages/s and p50/p99 latency for each server in each round, the
station's ratios to both (the median over rounds, and each round's), then
the station's resident memory with the idle fleet connected and sending
heartbeats. The machine has two cores: the load generator shares them with
the server, so absolute figures are for this machine only; the ratios are
what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx

from benchmarks import load
from simulators.ports import free_port
from simulators.stripe_sandbox import async_stripe_sandbox


@dataclass
class Figures:
    name: str
    messages_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


@contextlib.asynccontextmanager
async def baseline(kind: str) -> AsyncIterator[tuple[str, int]]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "benchmarks.baselines", kind, "0", stdout=subprocess.PIPE
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 30)
        port = int(line.split()[1])
        yield f"ws://127.0.0.1:{port}/ocpp", proc.pid
    finally:
        proc.terminate()
        await proc.wait()


async def register_charge_points(database_url: str, ids: list[str], password: str) -> None:
    from station.store.charging import register_charge_points
    from station.store.db import Database

    db = Database(database_url)
    await db.upgrade()
    try:
        await register_charge_points(db, [(cp_id, password) for cp_id in ids])
    finally:
        await db.dispose()


@dataclass
class RunningStation:
    ocpp_url: str
    pid: int
    http_url: str
    admin_token: str


@contextlib.asynccontextmanager
async def station(credential_ids: list[str], password: str) -> AsyncIterator[tuple[str, int]]:
    async with station_process(credential_ids, password) as running:
        yield running.ocpp_url, running.pid


@contextlib.asynccontextmanager
async def station_process(
    credential_ids: list[str], password: str, stripe_url: str | None = None
) -> AsyncIterator[RunningStation]:
    """``chargepay serve`` on a SQLite file; with ``stripe_url`` it pays through it."""
    with tempfile.TemporaryDirectory() as tmp:
        database_url = f"sqlite+aiosqlite:///{tmp}/bench.db"
        await register_charge_points(database_url, credential_ids, password)
        http_port, ocpp_port = free_port(), free_port()
        admin_token = secrets.token_urlsafe(24)
        env = {
            **os.environ,
            "CHARGEPAY_DATABASE_URL": database_url,
            "CHARGEPAY_HTTP_PORT": str(http_port),
            "CHARGEPAY_OCPP_PORT": str(ocpp_port),
            "CHARGEPAY_LOG_LEVEL": "WARNING",
            # The load's tags belong to no session: measure the OCPP pipeline itself.
            "CHARGEPAY_OCPP_FREE_VEND": "true",
            "CHARGEPAY_ADMIN_TOKEN": admin_token,
            "CHARGEPAY_SECRET_KEY": secrets.token_urlsafe(32),
            # `serve` refuses to start without a Stripe key; nothing here pays.
            "CHARGEPAY_STRIPE_API_KEY": "sk_test_" + secrets.token_hex(12),
            "CHARGEPAY_STRIPE_API_BASE": "http://127.0.0.1:9",
        }
        if stripe_url is not None:  # paid sessions only: every transaction is an agent's
            from simulators.stripe_sandbox import SANDBOX_API_KEY

            env["CHARGEPAY_OCPP_FREE_VEND"] = "false"
            env["CHARGEPAY_STRIPE_API_KEY"] = SANDBOX_API_KEY
            env["CHARGEPAY_STRIPE_API_BASE"] = stripe_url
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "station", "serve", env=env, cwd=tmp
        )
        try:
            async with httpx.AsyncClient() as client:
                deadline = time.monotonic() + 60
                while time.monotonic() < deadline:
                    with contextlib.suppress(httpx.TransportError):
                        if (await client.get(f"http://127.0.0.1:{http_port}/healthz")).is_success:
                            break
                    await asyncio.sleep(0.1)
                else:
                    raise RuntimeError("station did not become healthy")
            yield RunningStation(
                f"ws://127.0.0.1:{ocpp_port}/ocpp",
                proc.pid,
                f"http://127.0.0.1:{http_port}",
                admin_token,
            )
        finally:
            proc.terminate()
            await proc.wait()


async def paid_throughput(
    running: RunningStation,
    credentials: dict[str, str],
    warmup_s: float,
    duration_s: float,
    wh_per_reading: int = 1,
) -> tuple[load.PaidTally, float]:
    """Every charge point's transaction a paid session, its agent paying through localstripe.

    One signed agent (a car) per charge point negotiates, accepts (402), pays
    with a test card; the station holds the cap in localstripe and starts the
    charge point, which then sends its readings as fast as they are answered
    (each billed, CostUpdated pushed) and ends the transaction when the window
    closes; the agent waits for the session to be settled (captured).
    """
    from vehicle.client import StationClient, StationTarget
    from vehicle.errors import PaymentRefused
    from vehicle.goal import Goal
    from vehicle.money import Money
    from vehicle.payer import ExpectedPayment, authorization, parse_challenge
    from vehicle.signing import AgentSigner, generate_keypair, public_key_b64
    from vehicle.wallet import Instrument

    tally = load.PaidTally()
    window = load.window(len(credentials), warmup_s, duration_s)
    booted = {cp_id: asyncio.Event() for cp_id in credentials}
    ended = {cp_id: asyncio.Event() for cp_id in credentials}
    cap = Money.parse("40.00", "usd")
    agents = {}
    headers = {"Authorization": f"Bearer {running.admin_token}"}
    async with httpx.AsyncClient(base_url=running.http_url, headers=headers) as admin:
        for cp_id in credentials:
            key, _ = generate_keypair()
            created = await admin.post(
                "/v1/admin/agents",
                json={
                    "name": f"car-{cp_id}",
                    "public_key": public_key_b64(key),
                    "currency": "usd",
                    "limit_per_session": "50.00",
                    "limit_per_window": "100000.00",
                    "window_hours": 24,
                },
            )
            created.raise_for_status()
            agents[cp_id] = AgentSigner(created.json()["agent_id"], key)

    async def pay(cp_id: str) -> None:
        await booted[cp_id].wait()
        async with httpx.AsyncClient(auth=agents[cp_id], timeout=60) as http:
            agent = StationClient(http, running.http_url)
            goal = Goal(Decimal(20), Money.parse("50.00", "usd"))
            opened = await agent.open_negotiation(goal, StationTarget(running.http_url, cp_id, 1))
            assert opened.offer is not None, opened
            try:
                await agent.accept(opened.negotiation_id, opened.offer.offer_id, cap)
                raise RuntimeError("accept without a credential must answer 402")
            except PaymentRefused as refused:
                challenge = parse_challenge(refused.www_authenticate)
            expected = ExpectedPayment(cap, opened.offer.offer_id)
            credential = authorization(
                challenge, expected, Instrument("pm_card_visa"), datetime.now(UTC)
            )
            session = await agent.accept(
                opened.negotiation_id, opened.offer.offer_id, cap, credential
            )
            await ended[cp_id].wait()
            for _ in range(600):
                view = await agent.session(session.session_id)
                if view.terminal:
                    tally.settled += view.status == "settled"
                    return
                await asyncio.sleep(0.1)

    async def charge(cp_id: str, password: str) -> None:
        try:
            await load.paid_charge_point(
                running.ocpp_url, cp_id, password, window, tally, booted[cp_id], wh_per_reading
            )
        finally:
            ended[cp_id].set()

    async with asyncio.TaskGroup() as tasks:
        for cp_id, password in credentials.items():
            tasks.create_task(charge(cp_id, password))
            tasks.create_task(pay(cp_id))
    return tally, duration_s


@contextlib.asynccontextmanager
async def sampled(pid: int, path: str | None) -> AsyncIterator[None]:
    """With ``path``, py-spy samples the process meanwhile (collapsed stacks, appended)."""
    if path is None:
        yield
        return
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    proc = await asyncio.create_subprocess_exec(
        spy, "record", "--pid", str(pid), "--format", "raw", "-r", "100", "-o", path,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        yield
    finally:
        proc.send_signal(signal.SIGINT)
        await proc.wait()


def _figures(name: str, tally: load.Tally, seconds: float) -> Figures:
    lat = sorted(tally.latencies_s) or [float("nan")]
    return Figures(
        name,
        tally.messages / seconds,
        statistics.median(lat) * 1000,
        lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1000,
        tally.errors,
    )


async def run(args: argparse.Namespace) -> int:
    idle = 0 if args.skip_idle or args.baselines_only else args.idle
    # Registering hashes each password (scrypt): only the charge points that will connect.
    ids = [f"BENCH-{n:05d}" for n in range(max(args.charge_points, idle))]
    password = secrets.token_urlsafe(18)[:24]
    load_ids = ids[: args.charge_points]

    names = ["bare", "plain"] + ([] if args.baselines_only else ["station"])
    if args.paid and not args.baselines_only:
        names.append("paid")
    paid_checks: list[load.PaidTally] = []
    # The servers take turns, round after round: a machine whose speed drifts
    # (a shared host) then moves every figure of a round alike, and the ratios
    # are taken within each round.
    rounds: list[dict[str, Figures]] = []
    for _ in range(args.rounds):
        results: dict[str, Figures] = {}
        for name in names:
            if name == "paid":
                async with (
                    async_stripe_sandbox() as stripe_url,
                    station_process(ids, password, stripe_url) as running,
                    sampled(running.pid, args.profile),
                ):
                    paid, seconds = await paid_throughput(
                        running,
                        dict.fromkeys(load_ids, password),
                        args.warmup,
                        args.duration,
                        args.wh_per_reading,
                    )
                paid_checks.append(paid)
                results[name] = _figures(name, paid, seconds)
                continue
            target = station(ids, password) if name == "station" else baseline(name)
            creds = {cp: (password if name == "station" else None) for cp in load_ids}
            async with target as (url, _pid):
                tally, seconds = await load.throughput(url, creds, args.warmup, args.duration)
            results[name] = _figures(name, tally, seconds)
        rounds.append(results)

    print(
        f"\nOCPP 2.0.1 TransactionEvent, {args.charge_points} charge points, "
        f"{args.duration:g} s per server per round, {args.rounds} round(s)"
    )
    print(f"{'round':>5} {'server':10} {'msg/s':>10} {'p50 ms':>8} {'p99 ms':>8} {'errors':>7}")
    for number, results in enumerate(rounds, 1):
        for f in results.values():
            print(
                f"{number:5d} {f.name:10} {f.messages_per_s:10.0f} {f.p50_ms:8.2f} "
                f"{f.p99_ms:8.2f} {f.errors:7d}"
            )

    def ratio(a: str, b: str) -> str:
        values = [r[a].messages_per_s / r[b].messages_per_s for r in rounds]
        each = ", ".join(f"{v:.2f}" for v in values)
        return f"{statistics.median(values):5.2f}x median (rounds: {each})"

    if "station" in names:
        print(f"station / plain ocpp : {ratio('station', 'plain')}  (goal ≥ 2)")
        print(f"station / bare ws    : {ratio('station', 'bare')}  (goal ≥ 0.5)")
    if "paid" in names:
        print(f"paid / bare ws       : {ratio('paid', 'bare')}  (goal ≥ 0.7)")
        print(f"paid / unpaid        : {ratio('paid', 'station')}  (goal ≥ 0.9)")
        sessions = args.charge_points * len(paid_checks)
        settled = sum(t.settled for t in paid_checks)
        calls: dict[str, int] = {}
        for t in paid_checks:
            for action, count in t.calls.items():
                calls[action] = calls.get(action, 0) + count
        pushed = ", ".join(f"{action} {count}" for action, count in sorted(calls.items()))
        print(f"paid sessions settled: {settled} of {sessions}; station calls: {pushed}")
    else:
        print(f"plain / bare : {ratio('plain', 'bare')}")

    if not args.skip_idle and not args.baselines_only:
        creds = {cp: password for cp in ids[: args.idle]}
        async with station(ids, password) as (url, pid):
            connected = asyncio.Event()
            idle = asyncio.create_task(
                load.idle_fleet(url, creds, args.heartbeat, args.hold, connected)
            )
            await connected.wait()
            await asyncio.sleep(args.hold / 2)
            rss = rss_mib(pid)
            up = await idle
        print(
            f"\nstation memory with {up} idle charge points "
            f"(heartbeat every {args.heartbeat:g} s): {rss:.0f} MiB RSS, "
            f"{rss * 1024 / max(up, 1):.1f} KiB per charge point"
        )
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--charge-points", type=int, default=50)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--idle", type=int, default=5000)
    parser.add_argument("--heartbeat", type=float, default=10.0)
    parser.add_argument("--hold", type=float, default=20.0)
    parser.add_argument("--skip-idle", action="store_true")
    parser.add_argument("--baselines-only", action="store_true")
    parser.add_argument(
        "--paid", action="store_true", help="also every transaction a paid session (localstripe)"
    )
    parser.add_argument(
        "--wh-per-reading",
        type=int,
        default=1,
        help="energy per paid reading (CostUpdated goes out when the rounded cost changes:"
        " 40 Wh changes it at every reading at the default prices)",
    )
    parser.add_argument("--profile", metavar="FILE", help="py-spy the paid station (raw stacks)")
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
