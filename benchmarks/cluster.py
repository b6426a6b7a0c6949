"""Several nodes on one PostgreSQL: a routed command beside a local one, and msg/s.

    python -m benchmarks.cluster [--commands 300] [--charge-points 20]
                                 [--duration 10] [--warmup 2] [--rounds 3]

1. **Command latency.** Two station nodes (A and B) run in this process on a
   scratch PostgreSQL database, a simulated 2.0.1 charge point connected to A.
   The same command (TriggerMessage Heartbeat, answered by the charge point)
   is issued alternately on A (local: straight to the connection) and on B
   (routed: a command row + NOTIFY to A, the answer row + NOTIFY back). Prints
   p50/p99 of each and the goal: routed under 2 × local + 5 ms.
2. **Throughput.** `chargepay serve` as one process, then as two processes on
   the same database, driven by N charge points sending TransactionEvent as
   fast as the answers come (benchmarks.load); with two nodes half the charge
   points connect to each. Prints msg/s of each, round by round (they take
   turns), and the median ratio. On one host the load generator and both
   nodes share the cores: two nodes add no capacity there, only on two hosts.

``CHARGEPAY_BENCH_PG_DSN`` (default ``postgresql://postgres@127.0.0.1:5432/test``)
names a server where a scratch database is created and dropped. The machine is
shared: quote figures with the load average beside them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import asyncpg

from benchmarks import load
from benchmarks.ocpp_throughput import register_charge_points
from simulators.ports import free_port

PG_DSN = os.environ.get("CHARGEPAY_BENCH_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


@contextlib.asynccontextmanager
async def scratch_database() -> AsyncIterator[str]:
    name = f"chargepay_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_DSN)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_DSN.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_DSN)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


def _settings(database_url: str, node_id: str) -> Any:
    from pydantic import SecretStr

    from station.settings import Settings

    return Settings(
        database_url=database_url,
        node_id=node_id,
        http_port=0,
        ocpp_port=0,
        log_level="WARNING",
        ocpp_free_vend=True,
        admin_token=SecretStr(secrets.token_urlsafe(24)),
        secret_key=SecretStr(secrets.token_urlsafe(32)),
        stripe_api_key=SecretStr("sk_test_" + secrets.token_hex(12)),
        stripe_api_base="http://127.0.0.1:9",
    )


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99)] * 1000


async def command_latency(database_url: str, commands: int) -> tuple[list[float], list[float]]:
    from simulators.charge_point import SimulatedChargePoint
    from station.app import running_station

    cp_id, password = "BENCH-CMD", secrets.token_urlsafe(18)[:24]
    await register_charge_points(database_url, [cp_id], password)
    local: list[float] = []
    routed: list[float] = []
    async with (
        running_station(_settings(database_url, "bench-a")) as a,
        running_station(_settings(database_url, "bench-b")) as b,
    ):
        sim = SimulatedChargePoint(
            f"ws://127.0.0.1:{a.ocpp_port}/ocpp", cp_id, password, "ocpp2.0.1",
            charger_max_kw=Decimal(22),
        )  # fmt: skip
        async with sim:
            await asyncio.wait_for(sim.booted.wait(), 30)
            assert b.cluster is not None
            async with asyncio.timeout(30):
                while b.cluster.holder(cp_id) is None:  # noqa: ASYNC110 (B hears A's lease)
                    await asyncio.sleep(0.05)
            for n in range(commands + 20):  # 20 warm-up rounds, alternating
                for node, samples in ((a, local), (b, routed)):
                    started = time.perf_counter()
                    accepted = await node.commands.trigger_message(cp_id, "Heartbeat")  # type: ignore[attr-defined]
                    took = time.perf_counter() - started
                    assert accepted, "the charge point refused the trigger"
                    if n >= 20:
                        samples.append(took)
    return local, routed


@contextlib.asynccontextmanager
async def serve(database_url: str, node_id: str) -> AsyncIterator[str]:
    import httpx

    http_port, ocpp_port = free_port(), free_port()
    env = {
        **os.environ,
        "CHARGEPAY_DATABASE_URL": database_url,
        "CHARGEPAY_NODE_ID": node_id,
        "CHARGEPAY_HTTP_PORT": str(http_port),
        "CHARGEPAY_OCPP_PORT": str(ocpp_port),
        "CHARGEPAY_LOG_LEVEL": "WARNING",
        "CHARGEPAY_OCPP_FREE_VEND": "true",
        "CHARGEPAY_ADMIN_TOKEN": secrets.token_urlsafe(24),
        "CHARGEPAY_SECRET_KEY": secrets.token_urlsafe(32),
        "CHARGEPAY_STRIPE_API_KEY": "sk_test_" + secrets.token_hex(12),
        "CHARGEPAY_STRIPE_API_BASE": "http://127.0.0.1:9",
    }
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "station", "serve", env=env)
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(60):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"http://127.0.0.1:{http_port}/healthz")).is_success:
                        break
                await asyncio.sleep(0.1)
        yield f"ws://127.0.0.1:{ocpp_port}/ocpp"
    finally:
        proc.terminate()
        await proc.wait()


async def messages_per_s(
    database_url: str, nodes: int, charge_points: int, warmup_s: float, duration_s: float
) -> float:
    password = secrets.token_urlsafe(18)[:24]
    ids = [f"BENCH-{nodes}-{n:04d}" for n in range(charge_points)]
    await register_charge_points(database_url, ids, password)
    async with contextlib.AsyncExitStack() as stack:
        urls = [
            await stack.enter_async_context(serve(database_url, f"bench-{n}")) for n in range(nodes)
        ]
        shares: list[dict[str, str | None]] = [
            {cp: password for cp in ids[n::nodes]} for n in range(nodes)
        ]
        results = await asyncio.gather(
            *(
                load.throughput(url, share, warmup_s, duration_s)
                for url, share in zip(urls, shares, strict=True)
            )
        )
    return sum(tally.messages for tally, _ in results) / duration_s


async def run(args: argparse.Namespace) -> int:
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    async with scratch_database() as url:
        local, routed = await command_latency(url, args.commands)
    (l50, l99), (r50, r99) = _percentiles(local), _percentiles(routed)
    print(f"\nTriggerMessage on a 2.0.1 charge point connected to A, {args.commands} each")
    print(f"{'issued on':12} {'p50 ms':>8} {'p99 ms':>8}")
    print(f"{'A (local)':12} {l50:8.2f} {l99:8.2f}")
    print(f"{'B (routed)':12} {r50:8.2f} {r99:8.2f}")
    for name, lo, ro in (("p50", l50, r50), ("p99", l99, r99)):
        goal = 2 * lo + 5
        verdict = "met" if ro < goal else "NOT met"
        print(f"goal {name}: routed {ro:.2f} ms < 2 × {lo:.2f} + 5 = {goal:.2f} ms: {verdict}")

    # One node and two take turns, round after round: a shared machine's drift then
    # moves both figures of a round alike, and the ratio is taken within each round.
    rounds: list[dict[int, float]] = []
    for _ in range(args.rounds):
        figures: dict[int, float] = {}
        for nodes in (1, 2):
            async with scratch_database() as url:
                figures[nodes] = await messages_per_s(
                    url, nodes, args.charge_points, args.warmup, args.duration
                )
        rounds.append(figures)
    print(
        f"\nTransactionEvent, {args.charge_points} charge points, {args.duration:g} s,"
        f" {args.rounds} round(s)"
    )
    for number, figures in enumerate(rounds, 1):
        print(
            f"round {number}: one node {figures[1]:8.0f} msg/s, two nodes {figures[2]:8.0f}"
            f" msg/s ({figures[2] / figures[1]:.2f}x)"
        )
    ratio = statistics.median(f[2] / f[1] for f in rounds)
    print(f"two nodes / one: {ratio:.2f}x median")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--commands", type=int, default=300)
    parser.add_argument("--charge-points", type=int, default=20)
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--rounds", type=int, default=3)
    sys.exit(asyncio.run(run(parser.parse_args())))


if __name__ == "__main__":
    main()
