"""Payment path: accept→authorised latency and Stripe calls per session.

    python -m benchmarks.payments [--sessions 30]

Runs the Stripe sandbox (localstripe), a station on a SQLite file and one
simulated OCPP 2.0.1 charge point; then, session after session, a signed
agent negotiates, accepts (402), pays with `pm_card_visa`, the station holds
the cap, starts the charge point, the car tops up a nearly full battery and
the station settles. Prints:

- the time from `accept` with a credential to the session being authorised
  (hold placed, session stored), to the charge point accepting the start, and
  to the 201 the agent sees, p50/p99, beside the bare cost of what it must
  wait for — one manual-capture PaymentIntent create+confirm against the same
  localstripe — and the ratio;
- the Stripe calls per session on the happy path, by operation (the minimum
  is two: the hold and the capture).
"""

from __future__ import annotations

import argparse
import asyncio
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import stripe

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from simulators.stripe_sandbox import SANDBOX_API_KEY, stripe_sandbox
from station.app import running_station
from station.settings import Settings
from vehicle.client import StationClient, StationTarget
from vehicle.errors import PaymentRefused
from vehicle.goal import Goal
from vehicle.money import Money
from vehicle.payer import ExpectedPayment, authorization, parse_challenge
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64
from vehicle.wallet import Instrument

PASSWORD = "benchmark-password-0001"
CARD = Instrument("pm_card_visa")


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return (
        statistics.median(ordered) * 1000,
        ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000,
    )


async def bare_stripe_holds(stripe_url: str, count: int) -> list[float]:
    """The floor: a manual-capture PaymentIntent create+confirm, straight to the sandbox."""
    client = stripe.StripeClient(SANDBOX_API_KEY, base_addresses={"api": stripe_url})
    samples = []
    for _ in range(count):
        began = time.perf_counter()
        await client.v1.payment_intents.create_async(
            {
                "amount": 2500,
                "currency": "usd",
                "capture_method": "manual",
                "payment_method": "pm_card_visa",
                "confirm": True,
            }
        )
        samples.append(time.perf_counter() - began)
    return samples


async def run(sessions: int) -> None:
    admin_token = secrets.token_urlsafe(24)
    key, _ = generate_keypair()
    with tempfile.TemporaryDirectory() as tmp, stripe_sandbox() as stripe_url:
        settings = Settings(
            database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}",
            http_port=0,
            ocpp_port=0,
            admin_token=admin_token,
            secret_key=secrets.token_urlsafe(32),
            stripe_api_key=SANDBOX_API_KEY,
            stripe_api_base=stripe_url,
            log_level="WARNING",
            # One agent runs every session back to back: its agreed negotiations count as
            # live until they expire, and the per-agent ceiling (20) is not what is measured.
            max_open_negotiations_per_agent=max(20, sessions + 1),
        )
        async with running_station(settings) as station:
            base_url = f"http://127.0.0.1:{station.http_port}"
            async with httpx.AsyncClient(
                base_url=base_url, headers={"Authorization": f"Bearer {admin_token}"}
            ) as admin:
                (
                    await admin.post(
                        "/v1/admin/charge-points",
                        json={"charge_point_id": "CP-1", "password": PASSWORD},
                    )
                ).raise_for_status()
                created = await admin.post(
                    "/v1/admin/agents",
                    json={
                        "name": "bench-car",
                        "public_key": public_key_b64(key),
                        "currency": "usd",
                        "limit_per_session": "50.00",
                        "limit_per_window": "100000.00",
                        "window_hours": 24,
                    },
                )
                created.raise_for_status()
            agent_id = created.json()["agent_id"]
            sim = SimulatedChargePoint(
                f"ws://127.0.0.1:{station.ocpp_port}/ocpp",
                "CP-1",
                password=PASSWORD,
                version="ocpp2.0.1",
                time_scale=600,
                meter_interval_s=60,
            )
            latencies: list[float] = []
            calls_before = Counter(station.payments.gateway.calls)
            timings = station.payments.authorisation.timings
            timings_before = len(timings)
            async with sim, httpx.AsyncClient(auth=AgentSigner(agent_id, key)) as http:
                agent = StationClient(http, base_url)
                target = StationTarget(base_url, "CP-1", 1)
                goal = Goal(Decimal(5), Money.parse("20.00", "usd"))
                for _ in range(sessions):
                    plug = sim.plug_in(1, Battery(capacity_kwh=Decimal(40), soc=Decimal("0.95")))
                    opened = await agent.open_negotiation(goal, target)
                    assert opened.offer is not None
                    cap = Money.parse("10.00", "usd")
                    try:
                        await agent.accept(opened.negotiation_id, opened.offer.offer_id, cap)
                        raise RuntimeError("accept without a credential must answer 402")
                    except PaymentRefused as refused:
                        challenge = parse_challenge(refused.www_authenticate)
                    credential = authorization(
                        challenge,
                        ExpectedPayment(cap, opened.offer.offer_id),
                        CARD,
                        datetime.now(UTC),
                    )
                    began = time.perf_counter()
                    session = await agent.accept(
                        opened.negotiation_id, opened.offer.offer_id, cap, credential
                    )
                    latencies.append(time.perf_counter() - began)
                    assert session.status in {"authorized", "charging"}, session
                    await asyncio.wait_for(plug.ended.wait(), 30)
                    for _ in range(300):
                        if (await agent.session(session.session_id)).terminal:
                            break
                        await asyncio.sleep(0.05)
                    final = await agent.session(session.session_id)
                    assert final.status == "settled", final
            calls = Counter(station.payments.gateway.calls) - calls_before
            measured = list(timings)[timings_before:]
            authorised = [t.authorised_s for t in measured]
            started = [t.started_s for t in measured if t.started_s is not None]
            floor = await bare_stripe_holds(stripe_url, sessions)

    f50, f99 = _percentiles(floor)
    a50, _ = _percentiles(authorised)
    print(f"\npayment path, {sessions} sessions (SQLite, localstripe, OCPP 2.0.1 simulator)")
    print(f"{'from accept with a credential to':42} {'p50 ms':>8} {'p99 ms':>8}")
    for name, samples in (
        ("… the session authorised (hold placed)", authorised),
        ("… the charge point accepting the start", started),
        ("… the 201 at the agent (signed HTTP)", latencies),
    ):
        p50, p99 = _percentiles(samples)
        print(f"{name:42} {p50:8.1f} {p99:8.1f}")
    print(f"{'bare PaymentIntent create+confirm':42} {f50:8.1f} {f99:8.1f}")
    print(f"authorised / bare hold: {a50 / f50:4.2f}x at p50")
    per_session = sum(calls.values()) / sessions
    detail = ", ".join(f"{op} {n / sessions:g}" for op, n in sorted(calls.items()))
    print(f"Stripe calls per settled session: {per_session:g} ({detail}); minimum 2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=30)
    asyncio.run(run(parser.parse_args().sessions))
    sys.exit(0)


if __name__ == "__main__":
    main()
