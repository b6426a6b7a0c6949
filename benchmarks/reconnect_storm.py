"""Reconnect storm: the station restarts with every charge point connected; until all are back.

    python -m benchmarks.reconnect_storm [--charge-points 500] [--processes 2]
                                         [--source-addresses 1] [--blip] [--lazy-verifiers]
    python -m benchmarks.reconnect_storm --charge-points 10000 --source-addresses 4

Registers N charge points (one password hash shared by all rows, so that
setting up does not take N scrypt computations; each handshake still checks
its own) with a generated password random enough for a keyed verifier, and
gives each row the keyed verifier the station writes on a charge point's first
successful scrypt check (station.ocpp.auth.KeyedVerifier, keyed by the
station's secret key): a fleet that has connected once since the upgrade.
``--lazy-verifiers`` leaves them out: the first connection checks scrypt and
the station writes them then, as after an upgrade. Starts ``chargepay serve``
as a process with its open-file limit raised, and connects the fleet from
``--processes`` load-generator processes (the density benchmark's raw
client on asyncio protocols, so that it costs little beside the station:
BootNotification in OCPP 2.0.1, then idle) spread over ``--source-addresses``
loopback addresses 127.0.0.1, 127.0.0.2, … so the ephemeral port range is
not the limit. Then it stops the station (SIGTERM),
starts it again on the same database, and every charge point reconnects with
its own back-off (exponential from 0.5 s, doubling up to ``--backoff-max``,
plus up to 1 s of jitter).

Prints the time from the restart until every charge point has booted again
(and from the station answering /healthz), how many handshakes were refused
(401/429: must be 0) or timed out, and the baseline beside it: the time this
machine needs for N scrypt checks on all its cores, measured in this run —
the floor for any reconnect after a restart that verifies every password
with scrypt — and how the restarted station admitted them (its
``chargepay_ocpp_logins_total`` by check: keyed, scrypt, …).
``--blip`` drops every connection instead (the network, not the station) and
measures the reconnect into the running station, whose per-process cache of
verified credentials spares the scrypt checks. It also prints the CPU the
station and the load generators spent until every charge point was back, and
the load average: on a shared machine the station's share of the cores is
what the figure depends on.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import re
import resource
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.density import ChargePoint, Fleet
from simulators.ports import free_port

GOAL_CHARGE_POINTS, GOAL_S = 10_000, 30.0


def raise_open_files() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_s(pid: int) -> float:
    """User + system CPU seconds a process has used so far (0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# --- the load generator (a child process) ---------------------------------------------


@dataclass
class FleetState:
    boots: list[int]
    refused: dict[int, int] = field(default_factory=dict)
    timeouts: int = 0
    open: set[StormPoint] = field(default_factory=set)


class Refused(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


class StormPoint(ChargePoint):
    """One connection attempt: handshake and BootNotification (OCPP 2.0.1), then idle.

    The density benchmark's raw client (asyncio protocol, no task of its own),
    so that the load generator costs little beside the station.
    """

    def __init__(self, fleet: Fleet, host: str, cp_id: str, password: str) -> None:
        super().__init__(fleet, host, "/ocpp", cp_id, password)
        self.closed = asyncio.get_running_loop().create_future()

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.open and data.startswith(b"HTTP/1.1 ") and not data.startswith(b"HTTP/1.1 101"):
            if not self.booted.done():
                self.booted.set_exception(Refused(int(data[9:12])))
            assert self.transport is not None
            self.transport.close()
            return
        super().data_received(data)

    def schedule(self, delay_s: float) -> None:
        """Booted: no heartbeats (the station's interval is minutes)."""


async def _charge_point(
    port: int, n: int, cp_id: str, password: str, address: str, state: FleetState, cap_s: float
) -> None:
    loop = asyncio.get_running_loop()
    fleet = Fleet(interval_s=3600, compression=False)
    attempt = 0
    while True:
        point: StormPoint | None = None
        try:
            async with asyncio.timeout(60):
                _, point = await loop.create_connection(
                    lambda: StormPoint(fleet, f"127.0.0.1:{port}", cp_id, password),
                    "127.0.0.1", port, local_addr=(address, 0),
                )  # fmt: skip
                await point.booted
            state.boots[n] += 1
            attempt = 0
            state.open.add(point)
            try:
                await point.closed
            finally:
                state.open.discard(point)
        except Refused as exc:
            state.refused[exc.status] = state.refused.get(exc.status, 0) + 1
        except TimeoutError:
            state.timeouts += 1
        except OSError:
            pass
        if point is not None and point.transport is not None:
            point.transport.abort()
        await asyncio.sleep(min(cap_s, 0.5 * 2**attempt) + random.uniform(0, 1))
        attempt = min(attempt + 1, 16)


async def fleet(port: int, first: int, count: int, password: str, addresses: list[str]) -> None:
    """Keep charge points BENCH-first … connected; print their boot counts every 0.25 s."""
    raise_open_files()
    state = FleetState(boots=[0] * count)
    loop = asyncio.get_running_loop()

    def on_blip() -> None:  # the link drops: no closing handshake
        for point in list(state.open):
            if point.transport is not None:
                point.transport.abort()

    loop.add_signal_handler(signal.SIGUSR1, on_blip)
    cap_s = float(os.environ.get("STORM_BACKOFF_MAX_S", "16"))
    tasks = [
        asyncio.create_task(
            _charge_point(
                port,
                i,
                f"BENCH-{first + i:05d}",
                password,
                addresses[i % len(addresses)],
                state,
                cap_s,
            )
        )
        for i in range(count)
    ]
    try:
        while True:
            once = sum(b >= 1 for b in state.boots)
            twice = sum(b >= 2 for b in state.boots)
            refused = sum(state.refused.values())
            print(f"BOOTS {once} {twice} {refused} {state.timeouts}", flush=True)
            await asyncio.sleep(0.25)
    finally:
        for task in tasks:
            task.cancel()


# --- the orchestrator ------------------------------------------------------------------


async def register(
    database_url: str, ids: list[str], password: str, secret_key: str | None
) -> None:
    """Rows sharing one scrypt hash; with ``secret_key``, each with its keyed verifier."""
    from sqlalchemy import insert

    from station.ocpp.auth import KeyedVerifier
    from station.store.base import utcnow
    from station.store.charging import ChargePointRow, hash_password
    from station.store.db import Database

    db = Database(database_url)
    await db.upgrade()
    stored = hash_password(password)
    keyed = KeyedVerifier(secret_key) if secret_key else None
    try:
        async with db.session() as session:
            rows = [
                {"charge_point_id": cp, "password_hash": stored, "connected": False,
                 "created_at": utcnow(),
                 "password_verifier": keyed.make(stored, cp, password) if keyed else None}
                for cp in ids
            ]  # fmt: skip
            await session.execute(insert(ChargePointRow), rows)
    finally:
        await db.dispose()


class Station:
    def __init__(self, tmp: str) -> None:
        self.http_port, self.ocpp_port = free_port(), free_port()
        self.env = {
            **os.environ,
            "CHARGEPAY_DATABASE_URL": f"sqlite+aiosqlite:///{tmp}/storm.db",
            "CHARGEPAY_HTTP_PORT": str(self.http_port),
            "CHARGEPAY_OCPP_PORT": str(self.ocpp_port),
            "CHARGEPAY_LOG_LEVEL": "WARNING",
            "CHARGEPAY_ADMIN_TOKEN": secrets.token_urlsafe(24),
            "CHARGEPAY_SECRET_KEY": secrets.token_urlsafe(32),
            "CHARGEPAY_STRIPE_API_KEY": "sk_test_" + secrets.token_hex(12),
            "CHARGEPAY_STRIPE_API_BASE": "http://127.0.0.1:9",
        }
        self.tmp = tmp
        self.proc: asyncio.subprocess.Process | None = None
        self.spy: asyncio.subprocess.Process | None = None

    async def start(self, profile: str | None = None) -> None:
        """Start ``chargepay serve``; with ``profile``, py-spy samples it (collapsed stacks)."""
        self.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "station", "serve", env=self.env, cwd=self.tmp,
            preexec_fn=raise_open_files,
        )  # fmt: skip
        if profile:
            spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
            self.spy = await asyncio.create_subprocess_exec(
                spy, "record", "--pid", str(self.proc.pid), "--format", "raw", "-r", "50",
                "-o", profile, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        async with httpx.AsyncClient() as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                with contextlib.suppress(httpx.TransportError):
                    url = f"http://127.0.0.1:{self.http_port}/healthz"
                    if (await client.get(url, timeout=5)).is_success:
                        return
                await asyncio.sleep(0.05)
        raise RuntimeError("the station did not become healthy")

    async def logins(self) -> dict[str, int]:
        """The station's admitted handshakes by check (chargepay_ocpp_logins_total)."""
        headers = {"Authorization": f"Bearer {self.env['CHARGEPAY_ADMIN_TOKEN']}"}
        async with httpx.AsyncClient() as client:
            url = f"http://127.0.0.1:{self.http_port}/metrics"
            text = (await client.get(url, headers=headers, timeout=30)).text
        found = re.findall(r'^chargepay_ocpp_logins_total\{check="(\w+)"\} (\S+)$', text, re.M)
        return {check: int(float(value)) for check, value in found}

    async def stop(self) -> None:
        if self.spy is not None:
            self.spy.send_signal(signal.SIGINT)  # py-spy writes its file and exits
            await self.spy.wait()
            self.spy = None
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            await self.proc.wait()


@dataclass
class Progress:
    once: int = 0
    twice: int = 0
    refused: int = 0
    timeouts: int = 0


@contextlib.asynccontextmanager
async def fleets(
    port: int, n: int, processes: int, password: str, addresses: list[str], backoff_max: float
) -> AsyncIterator[tuple[list[asyncio.subprocess.Process], list[Progress]]]:
    share = -(-n // processes)
    procs, progress, readers = [], [], []
    env = {**os.environ, "STORM_BACKOFF_MAX_S": str(backoff_max)}
    for p in range(processes):
        first, count = p * share, min(share, n - p * share)
        if count <= 0:
            break
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "benchmarks.reconnect_storm", "--fleet",
            str(port), str(first), str(count), password, ",".join(addresses),
            stdout=subprocess.PIPE, env=env,
        )  # fmt: skip
        procs.append(proc)
        progress.append(Progress())
        readers.append(asyncio.create_task(_read(proc, progress[-1])))
    try:
        yield procs, progress
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            await proc.wait()
        for reader in readers:
            reader.cancel()


async def _read(proc: asyncio.subprocess.Process, progress: Progress) -> None:
    assert proc.stdout is not None
    async for line in proc.stdout:
        parts = line.split()
        if parts[:1] == [b"BOOTS"]:
            progress.once, progress.twice, progress.refused, progress.timeouts = map(
                int, parts[1:5]
            )


async def wait_until(check: object, timeout_s: float) -> float | None:
    started = time.perf_counter()
    while time.perf_counter() - started < timeout_s:
        if check():  # type: ignore[operator]
            return time.perf_counter() - started
        await asyncio.sleep(0.05)
    return None


def generated_password() -> str:
    """24 random base64url characters, as an operator would generate (random enough)."""
    from station.ocpp.auth import random_enough

    while not random_enough(password := secrets.token_urlsafe(18)):
        pass
    return password


def scrypt_floor_s(n: int) -> float:
    """Seconds this machine takes for n scrypt checks on all its cores (measured on a sample)."""
    from station.store.charging import hash_password, verify_password

    stored = hash_password("storm-baseline-password-01")
    sample = min(n, 200)
    cores = os.cpu_count() or 1
    with ThreadPoolExecutor(cores) as pool:
        started = time.perf_counter()
        list(pool.map(lambda _: verify_password("wrong-password-000001", stored), range(sample)))
        return (time.perf_counter() - started) / sample * n


async def run(args: argparse.Namespace) -> int:
    raise_open_files()
    n = args.charge_points
    ids = [f"BENCH-{i:05d}" for i in range(n)]
    password = generated_password()
    addresses = [f"127.0.0.{k}" for k in range(1, args.source_addresses + 1)]
    logins: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        station = Station(tmp)
        key = None if args.lazy_verifiers else station.env["CHARGEPAY_SECRET_KEY"]
        await register(station.env["CHARGEPAY_DATABASE_URL"], ids, password, key)
        await station.start()
        try:
            async with fleets(
                station.ocpp_port, n, args.processes, password, addresses, args.backoff_max
            ) as (procs, progress):

                def total(attr: str) -> int:
                    return sum(getattr(p, attr) for p in progress)

                connected_s = await wait_until(lambda: total("once") >= n, args.timeout)
                if connected_s is None:
                    print(f"only {total('once')} of {n} charge points connected at first")
                    return 1
                print(f"{n} charge points connected and booted in {connected_s:.1f} s")
                refused_before, timeouts_before = total("refused"), total("timeouts")
                stop_s = 0.0
                fleet_cpu = [cpu_s(p.pid) for p in procs]
                if args.blip:
                    assert station.proc is not None
                    station_cpu = cpu_s(station.proc.pid)
                    restart = time.perf_counter()
                    for proc in procs:
                        proc.send_signal(signal.SIGUSR1)
                    ready_s = 0.0
                else:
                    stopping = time.perf_counter()
                    await station.stop()
                    restart = time.perf_counter()
                    stop_s = restart - stopping
                    await station.start(args.profile)
                    station_cpu = 0.0
                    ready_s = time.perf_counter() - restart
                back_s = await wait_until(
                    lambda: total("twice") >= n, args.timeout - (time.perf_counter() - restart)
                )
                back_s = None if back_s is None else time.perf_counter() - restart
                assert station.proc is not None
                station_cpu = cpu_s(station.proc.pid) - station_cpu
                fleet_cpu_s = sum(cpu_s(p.pid) - c for p, c in zip(procs, fleet_cpu, strict=True))
                load = os.getloadavg()[0]
                refused = total("refused") - refused_before
                timeouts = total("timeouts") - timeouts_before
                booted = total("twice")
                logins = await station.logins()
        finally:
            await station.stop()
    floor = scrypt_floor_s(n)
    what = "link blip (station kept running)" if args.blip else "station restart"
    print(f"\nreconnect storm, {what}: {n} charge points, {args.processes} load processes, "
          f"{len(addresses)} source address(es)")  # fmt: skip
    if not args.blip:
        print(f"  graceful stop (SIGTERM) took     : {stop_s:6.1f} s")
        print(f"  new station healthy after        : {ready_s:6.1f} s")
    if back_s is None:
        print(f"  every charge point booted again  : NOT within {args.timeout:g} s "
              f"({booted} of {n})")  # fmt: skip
    else:
        print(f"  every charge point booted again  : {back_s:6.1f} s after the (re)start")
    print(f"  handshakes refused (401/429)     : {refused}")
    admitted = ", ".join(f"{check} {count}" for check, count in sorted(logins.items()))
    print(f"  admitted since the (re)start by  : {admitted or '-'}")
    print(f"  handshakes timed out (client)    : {timeouts}")
    print(f"  CPU until all were back: station : {station_cpu:6.1f} s "
          f"({station_cpu / n * 1000:.2f} ms per charge point); load generators "
          f"{fleet_cpu_s:.1f} s; load average {load:.1f}")  # fmt: skip
    print(f"  baseline: {n} scrypt checks on {os.cpu_count()} cores : {floor:6.1f} s")
    if back_s is not None:
        print(f"  storm / scrypt baseline          : {back_s / floor:6.2f}")
    if n >= GOAL_CHARGE_POINTS:
        met = back_s is not None and back_s <= GOAL_S
        verdict = "met" if met else "NOT met"
        print(f"  goal ({GOAL_CHARGE_POINTS} within {GOAL_S:g} s)       : {verdict}")
    return 0 if back_s is not None and refused == 0 else 1


def main() -> int:
    if sys.argv[1:2] == ["--fleet"]:
        port, first, count, password, addresses = sys.argv[2:7]
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(fleet(int(port), int(first), int(count), password, addresses.split(",")))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--charge-points", type=int, default=500)
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--source-addresses", type=int, default=1, help="127.0.0.1 … 127.0.0.K")
    parser.add_argument("--backoff-max", type=float, default=16.0, help="charge point back-off cap")
    parser.add_argument("--timeout", type=float, default=600.0, help="give up after (s)")
    parser.add_argument("--blip", action="store_true", help="drop the links, keep the station")
    parser.add_argument(
        "--profile", metavar="SVG", help="run the restarted station under py-spy, graph here"
    )
    parser.add_argument(
        "--lazy-verifiers", action="store_true", help="the first connection writes them"
    )
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
