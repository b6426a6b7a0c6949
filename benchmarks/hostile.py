"""The hostile-input campaign (issue 15): a red team from loopback, one command.

    python -m benchmarks.hostile [--database sqlite|postgres|both] [--scale 1.0]
                                 [--nofile 1024] [--seed 15] [--cases fuzz,negotiations,…]

For each database it starts the station as its own process (``python -m
station serve``, its open-file limit lowered to ``--nofile``, INFO logs in
JSON to a file), registers charge points and two agents through the
operator API, and then:

1. **OCPP frame fuzz** over 1.6, 2.0.1 and 2.1 from authenticated charge
   points: lone surrogates and NUL in ids and strings, numbers past every
   column's range, deep nesting, unsolicited CALLRESULTs and CALLERRORs,
   wrong types, non-JSON and binary frames. After each frame the fuzzer
   checks its connection still answers a Heartbeat (reconnecting if not).
   Meanwhile two bystander charge points send Heartbeats; at the end their
   frame-log rows are counted against what they sent (**rows lost**).
2. **HTTP fuzz** beyond schemathesis: correctly signed requests (so they
   pass the signature check and reach validation) with mutated bodies —
   surrogates, NUL, huge numbers, deep nesting, wrong types, invalid UTF-8,
   bodies past the size cap — on negotiation, counter and accept.
3. **Exhaustion**, one case after the other, each held while a real charge
   point connects (WebSocket handshake with Basic auth, BootNotification
   answered) and ``/healthz`` is asked: half-open WebSocket handshakes on the
   OCPP port, slowloris connections on the HTTP port (both past the
   station's file limit), one agent opening negotiations as fast as it can,
   one agent opening event streams it never reads.

It prints the frames and requests sent, the 5xx answers, the tracebacks in
the station's log, the rows lost, the "too many open files" log lines, the
station's RSS before and after, and per exhaustion case the connect time.
``--scale`` multiplies every count (the suite runs a short one:
tests/test_hostile.py). Exit status 1 if any 5xx, traceback or lost row.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import random
import resource
import secrets
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from simulators.ports import free_port
from vehicle.signing import AgentSigner, generate_keypair, public_key_b64

PG_DSN = os.environ.get("CHARGEPAY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")
VERSIONS = ("ocpp1.6", "ocpp2.0.1", "ocpp2.1")
PASSWORD = "hostile-password-0123"
ADMIN_TOKEN = secrets.token_urlsafe(32)


# -- the station as a process --------------------------------------------------------


def rss_mib(pid: int) -> float:
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def raise_own_file_limit() -> None:
    """The attacker needs more descriptors than the station it attacks."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class StationProcess:
    proc: asyncio.subprocess.Process
    http: str
    ocpp: str
    log: Path
    database_url: str

    def rss_mib(self) -> float:
        return rss_mib(self.proc.pid)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


class PortTaken(RuntimeError):
    """A free port picked for the station was taken by someone else before it bound it."""


@contextlib.asynccontextmanager
async def station_process(
    database_url: str, workdir: Path, *, nofile: int | None = None, **settings: str
) -> AsyncIterator[StationProcess]:
    """``python -m station serve`` on free ports; killed on exit if still running.

    ``settings`` are extra ``CHARGEPAY_*`` variables (lower-case names without
    the prefix). ``nofile`` lowers the process's open-file limit (soft and hard).
    A port taken between picking and binding it (other processes on the host)
    means another try on new ports.
    """
    for attempt in range(3):
        try:
            async with _station_process(database_url, workdir, nofile, settings) as station:
                yield station
                return
        except PortTaken:
            if attempt == 2:
                raise


@contextlib.asynccontextmanager
async def _station_process(
    database_url: str, workdir: Path, nofile: int | None, settings: dict[str, str]
) -> AsyncIterator[StationProcess]:
    http_port, ocpp_port = free_port(), free_port()
    env = {
        **os.environ,
        "CHARGEPAY_DATABASE_URL": database_url,
        "CHARGEPAY_HTTP_PORT": str(http_port),
        "CHARGEPAY_OCPP_PORT": str(ocpp_port),
        "CHARGEPAY_LOG_LEVEL": "INFO",
        "CHARGEPAY_LOG_FORMAT": "json",
        "CHARGEPAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "CHARGEPAY_SECRET_KEY": secrets.token_urlsafe(32),
        "CHARGEPAY_STRIPE_API_KEY": "sk_test_" + secrets.token_hex(12),
        # Nothing may leave the machine: no Stripe call is expected, and none can go out.
        "CHARGEPAY_STRIPE_API_BASE": f"http://127.0.0.1:{free_port()}",
        **{f"CHARGEPAY_{name.upper()}": value for name, value in settings.items()},
    }

    def limit_files() -> None:
        if nofile is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

    log = workdir / "station.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "station",
            "serve",
            env=env,
            cwd=workdir,
            stdout=out,
            stderr=out,
            preexec_fn=limit_files,
        )
    station = StationProcess(
        proc,
        f"http://127.0.0.1:{http_port}",
        f"ws://127.0.0.1:{ocpp_port}/ocpp",
        log,
        database_url,
    )
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(60):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    if (await client.get(f"{station.http}/healthz")).status_code == 200:
                        break
                if proc.returncode is not None:
                    output = station.log_text()
                    if "is in use" in output:
                        raise PortTaken(output[-500:])
                    raise RuntimeError(f"the station exited:\n{output[-2000:]}")
                await asyncio.sleep(0.1)
        yield station
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@contextlib.asynccontextmanager
async def database(kind: str, workdir: Path) -> AsyncIterator[str]:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{workdir / 'hostile.db'}"
        return
    import asyncpg

    name = f"chargepay_hostile_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(PG_DSN, timeout=5)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    base = PG_DSN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://", 1)
    try:
        yield f"{base}/{name}"
    finally:
        admin = await asyncpg.connect(PG_DSN, timeout=5)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def frame_rows_in(database_url: str, charge_point_id: str) -> int:
    """Frames from a charge point the station's frame log holds."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database_url)
    try:
        async with engine.connect() as conn:
            result = await conn.execute(
                text(
                    "SELECT count(*) FROM ocpp_messages"
                    " WHERE charge_point_id = :cp AND direction = 'in'"
                ),
                {"cp": charge_point_id},
            )
            return int(result.scalar_one())
    finally:
        await engine.dispose()


# -- the report ----------------------------------------------------------------------


@dataclass
class Exhaustion:
    name: str
    size: int
    connect_s: list[float] = field(default_factory=list)  # nan: could not connect
    healthz_s: list[float] = field(default_factory=list)
    note: str = ""


@dataclass
class Report:
    database: str
    frames_sent: Counter[str] = field(default_factory=Counter)
    frame_reconnects: int = 0
    requests_sent: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    bystander_sent: dict[str, int] = field(default_factory=dict)
    bystander_stored: dict[str, int] = field(default_factory=dict)
    exhaustion: list[Exhaustion] = field(default_factory=list)
    rss_before_mib: float = 0.0
    rss_after_mib: float = 0.0
    tracebacks: int = 0
    emfile_lines: int = 0
    log_lines: int = 0

    @property
    def fivexx(self) -> int:
        return sum(n for status, n in self.statuses.items() if status >= 500)

    @property
    def rows_lost(self) -> int:
        return sum(
            max(0, sent - self.bystander_stored.get(cp, 0))
            for cp, sent in self.bystander_sent.items()
        )

    @property
    def clean(self) -> bool:
        return self.fivexx == 0 and self.tracebacks == 0 and self.rows_lost == 0

    def render(self) -> str:
        lines = [f"## {self.database}"]
        frames = ", ".join(f"{v} {n}" for v, n in sorted(self.frames_sent.items()))
        lines.append(
            f"OCPP frames sent: {sum(self.frames_sent.values())} ({frames}); "
            f"fuzz connections lost and reopened: {self.frame_reconnects}"
        )
        statuses = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses.items()))
        lines.append(f"HTTP requests sent: {self.requests_sent} ({statuses})")
        lines.append(f"5xx: {self.fivexx}")
        lines.append(f"tracebacks in the station's log: {self.tracebacks}")
        bystanders = ", ".join(
            f"{cp} sent {sent} stored {self.bystander_stored.get(cp, 0)}"
            for cp, sent in self.bystander_sent.items()
        )
        lines.append(f"rows lost: {self.rows_lost} ({bystanders})")
        lines.append(
            f"log lines: {self.log_lines}, of which 'too many open files' / accept: "
            f"{self.emfile_lines}"
        )
        lines.append(
            f"station RSS: {self.rss_before_mib:.0f} MiB before, {self.rss_after_mib:.0f} MiB after"
        )
        lines.append("exhaustion (a real charge point connecting while it runs):")
        for case in self.exhaustion:
            lines.append(
                f"  {case.name:<22} size {case.size:>5}  connect {_times(case.connect_s)}"
                f"  /healthz {_times(case.healthz_s)}  {case.note}"
            )
        return "\n".join(lines)


def _times(values: list[float]) -> str:
    ok = [v for v in values if v == v]
    failed = len(values) - len(ok)
    if not ok:
        return f"never ({failed} tries)"
    text = f"median {statistics.median(ok) * 1000:.0f} ms, max {max(ok) * 1000:.0f} ms"
    return text + (f", {failed} failed" if failed else "")


# -- OCPP ----------------------------------------------------------------------------


def basic(cp_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{cp_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def ocpp_connect(
    station: StationProcess, cp_id: str, version: str, timeout_s: float = 20
) -> ClientConnection:
    return await connect(
        f"{station.ocpp}/{cp_id}",
        subprotocols=[version],  # type: ignore[list-item]
        additional_headers=basic(cp_id, PASSWORD),
        open_timeout=timeout_s,
        ping_interval=None,
        max_size=None,
    )


async def call(ws: ClientConnection, action: str, payload: dict[str, Any]) -> list[Any]:
    """A CALL and its answer (station calls in between are answered empty)."""
    message_id = uuid.uuid4().hex
    await ws.send(json.dumps([2, message_id, action, payload]))
    while True:
        reply = json.loads(await ws.recv())
        if reply[0] == 2:
            await ws.send(json.dumps([3, reply[1], {}]))
        elif reply[1] == message_id:
            return list(reply)


def boot(version: str) -> dict[str, Any]:
    if version == "ocpp1.6":
        return {"chargePointVendor": "hostile", "chargePointModel": "red-team"}
    return {"reason": "PowerUp", "chargingStation": {"model": "red-team", "vendorName": "hostile"}}


async def time_to_connect(station: StationProcess, cp_id: str, timeout_s: float = 20) -> float:
    """A real charge point: handshake with Basic auth, BootNotification answered."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(timeout_s):
            ws = await ocpp_connect(station, cp_id, "ocpp2.0.1", timeout_s)
            try:
                reply = await call(ws, "BootNotification", boot("ocpp2.0.1"))
            finally:
                await ws.close()
        if reply[0] != 3:
            return float("nan")
        return time.monotonic() - started
    except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed):
        return float("nan")


async def time_healthz(station: StationProcess, timeout_s: float = 10) -> float:
    started = time.monotonic()
    try:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            response = await client.get(f"{station.http}/healthz")
        return time.monotonic() - started if response.status_code == 200 else float("nan")
    except httpx.HTTPError:
        return float("nan")


SURROGATE = '"\\ud800"'  # a lone surrogate, as JSON escapes it
NUL = '"a\\u0000b"'
HUGE = ("1" + "0" * 30, str(2**63), str(-(2**63) - 1), "1e999", "-1e999", "1e-999", "NaN")


def fuzz_frames(version: str, rng: random.Random) -> Callable[[], str | bytes]:
    """One hostile frame at a time for ``version``."""
    v16 = version == "ocpp1.6"

    def status() -> str:
        if v16:
            return '{"connectorId": %s, "errorCode": "NoError", "status": "Available"}'
        return (
            '{"timestamp": "2026-01-01T00:00:00Z", "connectorStatus": "Available",'
            ' "evseId": %s, "connectorId": 1}'
        )

    def any_id() -> str:
        return rng.choice([SURROGATE, NUL, '"' + "x" * 200 + '"', "12", "null", '""'])

    def nested(depth: int) -> str:
        return "[" * depth + "]" * depth

    def mid() -> str:
        return uuid.uuid4().hex

    def meter_values() -> str:
        sample = '{"timestamp": "2026-01-01T00:00:00Z", "sampledValue": [{"value": %s}]}'
        if v16:
            payload = f'{{"connectorId": 1, "meterValue": [{sample % rng.choice(HUGE)}]}}'
        else:
            payload = f'{{"evseId": {rng.choice(HUGE)}, "meterValue": [{sample % 1}]}}'
        return f'[2, "{mid()}", "MeterValues", {payload}]'

    makers: list[Callable[[], str | bytes]] = [
        lambda: f'[2, {SURROGATE}, "Heartbeat", {{}}]',
        lambda: f'[2, {NUL}, "Heartbeat", {{}}]',
        lambda: f'[2, "{uuid.uuid4().hex}", "Heartbeat", {{"x": {SURROGATE}}}]',
        lambda: (
            f'[2, "{uuid.uuid4().hex}", "StatusNotification", ' + status() % rng.choice(HUGE) + "]"
        ),
        lambda: (
            f'[2, "{uuid.uuid4().hex}", "BootNotification", '
            + json.dumps(boot(version)).replace('"red-team"', rng.choice([SURROGATE, NUL]))
            + "]"
        ),
        lambda: f'[2, "{uuid.uuid4().hex}", "Heartbeat", {nested(rng.choice([40, 500, 5000]))}]',
        lambda: f"[3, {any_id()}, {{}}]",  # unsolicited CALLRESULT
        lambda: f'[3, "{uuid.uuid4().hex}", {{"pad": "{"y" * rng.choice([10, 10_000])}"}}]',
        lambda: f'[4, {any_id()}, "InternalError", {SURROGATE}, {{}}]',  # unsolicited CALLERROR
        lambda: f'[2, "{uuid.uuid4().hex}", {rng.choice(["7", "null", SURROGATE, NUL])}, {{}}]',
        lambda: f'[{rng.choice(["7", "-1", "1e999", SURROGATE])}, "{mid()}", "Heartbeat", {{}}]',
        lambda: rng.choice(["", "[", "not json", "[2]", "{}", "[2, 1, 2, 3, 4, 5]"]),
        lambda: bytes(rng.randrange(256) for _ in range(rng.choice([1, 64, 4096]))),
        meter_values,
    ]
    return lambda: rng.choice(makers)()


async def fuzz_ocpp(
    station: StationProcess,
    cp_id: str,
    version: str,
    frames: int,
    rng: random.Random,
    report: Report,
) -> None:
    make = fuzz_frames(version, rng)
    ws: ClientConnection | None = None
    sent = 0
    while sent < frames:
        try:
            if ws is None:
                ws = await ocpp_connect(station, cp_id, version)
            frame = make()
            await ws.send(frame)
            sent += 1
            report.frames_sent[version] += 1
            # Still alive? A Heartbeat answers (frames in between are read and dropped).
            if sent % 5 == 0:
                await asyncio.wait_for(call(ws, "Heartbeat", {}), 20)
        except (ConnectionClosed, OSError, TimeoutError, InvalidHandshake, ValueError):
            report.frame_reconnects += 1
            if ws is not None:
                with contextlib.suppress(Exception):
                    await ws.close()
            ws = None
            await asyncio.sleep(0.05)
    if ws is not None:
        await ws.close()


async def bystander(
    station: StationProcess, cp_id: str, version: str, stop: asyncio.Event, report: Report
) -> None:
    """An honest charge point: Heartbeats until told to stop; counts what was answered."""
    sent = 0
    ws = await ocpp_connect(station, cp_id, version)
    try:
        sent += 1
        await call(ws, "BootNotification", boot(version))
        while not stop.is_set():
            sent += 1
            await asyncio.wait_for(call(ws, "Heartbeat", {}), 30)
            await asyncio.sleep(0.05)
    finally:
        report.bystander_sent[cp_id] = sent
        await ws.close()


# -- HTTP ----------------------------------------------------------------------------


def mutated_bodies(rng: random.Random, charge_point_id: str) -> Callable[[], bytes]:
    def deep(n: int) -> str:
        return '{"a": ' * n + "1" + "}" * n

    values = [
        SURROGATE,
        NUL,
        '"\\udfff\\ud800"',
        *HUGE,
        "true",
        "null",
        "[]",
        "{}",
        '"' + "9" * 5000 + '"',
        '"-0"',
        '"0.00001"',
        '"1e3"',
        '"٣"',
        '"12.345678"',
        deep(50),
        "[" * 3000 + "]" * 3000,
    ]
    fields = [
        "charge_point_id",
        "evse_id",
        "energy_kwh",
        "max_power_kw",
        "departure_at",
        "currency",
        "energy_price_per_kwh",
        "offer_id",
        "cap",
        "extra",
    ]

    def one() -> bytes:
        kind = rng.randrange(10)
        if kind == 0:
            return bytes(rng.randrange(256) for _ in range(rng.choice([1, 100, 1000])))
        if kind == 1:
            return b'{"energy_kwh": "\xff\xfe", "charge_point_id": "CP"}'
        if kind == 2:
            return b'{"energy_kwh": "' + b"1" * 70_000 + b'"}'  # past the body cap
        body = {"charge_point_id": json.dumps(charge_point_id), "energy_kwh": '"20"'}
        for _ in range(rng.randint(1, 3)):
            body[rng.choice(fields)] = rng.choice(values)
        return ("{" + ", ".join(f'"{k}": {v}' for k, v in body.items()) + "}").encode()

    return one


async def fuzz_http(
    station: StationProcess,
    signer: AgentSigner,
    charge_point_id: str,
    requests: int,
    rng: random.Random,
    report: Report,
) -> None:
    body = mutated_bodies(rng, charge_point_id)
    async with httpx.AsyncClient(base_url=station.http, auth=signer, timeout=30) as client:
        good = await client.post(
            "/v1/negotiations", json={"charge_point_id": charge_point_id, "energy_kwh": "20"}
        )
        report.requests_sent += 1
        report.statuses[good.status_code] += 1
        negotiation = good.json().get("negotiation_id", "neg_missing") if good.is_success else "x"
        paths = [
            "/v1/negotiations",
            f"/v1/negotiations/{negotiation}/counter",
            f"/v1/negotiations/{negotiation}/accept",
            "/v1/negotiations/%00/counter",
            "/v1/negotiations/%ED%A0%80/accept",
        ]
        semaphore = asyncio.Semaphore(8)

        async def one() -> None:
            async with semaphore:
                headers = {"Content-Type": rng.choice(["application/json", "text/plain"])}
                try:
                    response = await client.post(rng.choice(paths), content=body(), headers=headers)
                    report.statuses[response.status_code] += 1
                except httpx.HTTPError:
                    report.statuses[0] += 1
                report.requests_sent += 1

        await asyncio.gather(*(one() for _ in range(requests)))


# -- exhaustion ----------------------------------------------------------------------


async def open_sockets(port: int, count: int, first_bytes: bytes) -> list[socket.socket]:
    loop = asyncio.get_running_loop()
    sockets: list[socket.socket] = []
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), 2)
            await loop.sock_sendall(sock, first_bytes)
        except (OSError, TimeoutError):
            sock.close()
            continue
        sockets.append(sock)
    return sockets


async def drip(sockets: list[socket.socket], stop: asyncio.Event, every_s: float = 1.0) -> None:
    """Slowloris: one more header byte now and then, so the head is never complete."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        for sock in sockets:
            with contextlib.suppress(OSError):
                await asyncio.wait_for(loop.sock_sendall(sock, b"X"), 0.1)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def measure_during(
    station: StationProcess, case: Exhaustion, hold_s: float, cp_id: str
) -> None:
    """Connect a real charge point and ask /healthz a few times while the case holds."""
    deadline = time.monotonic() + hold_s
    while True:
        case.connect_s.append(await time_to_connect(station, cp_id, timeout_s=15))
        case.healthz_s.append(await time_healthz(station))
        if time.monotonic() >= deadline:
            return
        await asyncio.sleep(max(0.0, min(2.0, deadline - time.monotonic())))


def port_of(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/", 1)[0])


async def exhaust_handshakes(station: StationProcess, size: int, hold_s: float) -> Exhaustion:
    case = Exhaustion("half-open handshakes", size)
    head = b"GET /ocpp/CP-X HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
    sockets = await open_sockets(port_of(station.ocpp), size, head)
    stop = asyncio.Event()
    dripping = asyncio.create_task(drip(sockets, stop))
    try:
        await measure_during(station, case, hold_s, "CP-REAL")
    finally:
        stop.set()
        await dripping
        case.note = f"{_still_open(sockets)} of {len(sockets)} still open at the end"
        for sock in sockets:
            sock.close()
    return case


async def exhaust_slowloris(station: StationProcess, size: int, hold_s: float) -> Exhaustion:
    case = Exhaustion("slowloris (HTTP)", size)
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-a: "
    sockets = await open_sockets(port_of(station.http), size, head)
    stop = asyncio.Event()
    dripping = asyncio.create_task(drip(sockets, stop))
    try:
        await measure_during(station, case, hold_s, "CP-REAL")
    finally:
        stop.set()
        await dripping
        case.note = f"{_still_open(sockets)} of {len(sockets)} still open at the end"
        for sock in sockets:
            sock.close()
    return case


def _still_open(sockets: list[socket.socket]) -> int:
    """Sockets the station has not closed (a read would block, not return EOF or reset)."""
    alive = 0
    for sock in sockets:
        try:
            data = sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
            alive += 0 if data == b"" else 1
        except BlockingIOError:
            alive += 1
        except OSError:
            pass
    return alive


async def exhaust_negotiations(
    station: StationProcess, signer: AgentSigner, size: int, hold_s: float, report: Report
) -> Exhaustion:
    case = Exhaustion("negotiations (1 agent)", size)
    outcome: Counter[int] = Counter()
    async with httpx.AsyncClient(base_url=station.http, auth=signer, timeout=30) as client:
        semaphore = asyncio.Semaphore(8)

        async def one() -> None:
            async with semaphore:
                response = await client.post(
                    "/v1/negotiations", json={"charge_point_id": "CP-REAL", "energy_kwh": "20"}
                )
                outcome[response.status_code] += 1
                report.statuses[response.status_code] += 1
                report.requests_sent += 1

        flood = asyncio.gather(*(one() for _ in range(size)))
        await measure_during(station, case, hold_s, "CP-REAL")
        await flood
    case.note = ", ".join(f"{status}: {n}" for status, n in sorted(outcome.items()))
    return case


async def exhaust_event_streams(
    station: StationProcess,
    signer: AgentSigner,
    session_id: str | None,
    size: int,
    hold_s: float,
    report: Report,
) -> Exhaustion:
    case = Exhaustion("event streams (1 agent)", size)
    if session_id is None:
        case.note = "skipped: no session to stream"
        return case
    loop = asyncio.get_running_loop()
    path = f"/v1/sessions/{session_id}/events"
    sockets: list[socket.socket] = []
    for _ in range(size):
        signed = next(signer.auth_flow(httpx.Request("GET", station.http + path)))
        head = f"GET {path} HTTP/1.1\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in signed.headers.items()
        )
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.setblocking(False)
        try:
            await loop.sock_connect(sock, ("127.0.0.1", port_of(station.http)))
            await loop.sock_sendall(sock, (head + "\r\n").encode())
        except OSError:
            sock.close()
            continue
        sockets.append(sock)
        report.requests_sent += 1
    sent_at = time.monotonic()
    measuring = asyncio.create_task(measure_during(station, case, hold_s, "CP-REAL"))
    statuses: Counter[str] = Counter()
    while True:  # a peek at each status line (never reading the stream itself)
        statuses = Counter(_status_line(sock) for sock in sockets)
        if "no answer" not in statuses or time.monotonic() - sent_at > 30:
            break
        await asyncio.sleep(0.25)
    answered_s = time.monotonic() - sent_at
    for status, n in statuses.items():
        if status.isdigit():
            report.statuses[int(status)] += n
    try:
        await measuring
    finally:
        answers = ", ".join(f"{s}: {n}" for s, n in sorted(statuses.items()))
        case.note = f"{answers} (all answered {answered_s:.1f} s after sending)"
        for sock in sockets:
            sock.close()
    return case


def _status_line(sock: socket.socket) -> str:
    try:
        head = sock.recv(12, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except BlockingIOError:
        return "no answer"
    except OSError:
        return "reset"
    return head[9:12].decode(errors="replace") if len(head) >= 12 else "closed"


# -- set-up and the whole run --------------------------------------------------------


# What the campaign runs; `--cases` picks some (the fuzz includes the bystanders' count).
CASES = ("fuzz", "handshakes", "slowloris", "negotiations", "event_streams")


@dataclass
class Options:
    databases: tuple[str, ...] = ("sqlite", "postgres")
    scale: float = 1.0
    nofile: int = 1024
    seed: int = 15
    hold_s: float = 12.0
    header_timeout_s: float = 5.0
    cases: frozenset[str] = frozenset(CASES)

    def n(self, full: int, least: int = 1) -> int:
        return max(least, int(full * self.scale))


async def register(station: StationProcess, charge_points: list[str]) -> list[AgentSigner]:
    headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    agents: list[AgentSigner] = []
    async with httpx.AsyncClient(base_url=station.http, headers=headers, timeout=30) as admin:
        for cp_id in charge_points:
            response = await admin.post(
                "/v1/admin/charge-points", json={"charge_point_id": cp_id, "password": PASSWORD}
            )
            response.raise_for_status()
        for name in ("fuzzer", "flooder"):
            key, _ = generate_keypair()
            response = await admin.post(
                "/v1/admin/agents",
                json={
                    "name": name,
                    "public_key": public_key_b64(key),
                    "currency": "usd",
                    "limit_per_session": "50.00",
                    "limit_per_window": "200.00",
                },
            )
            response.raise_for_status()
            agents.append(AgentSigner(response.json()["agent_id"], key))
    return agents


async def a_session(database_url: str, agent_id: str) -> str:
    """A charging session of ``agent_id`` written straight to the database (to stream)."""
    from sqlalchemy import insert
    from sqlalchemy.ext.asyncio import create_async_engine

    from station.store.payments import SessionRow

    session_id = f"ses_{uuid.uuid4().hex[:20]}"
    engine = create_async_engine(database_url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                insert(SessionRow).values(
                    session_id=session_id,
                    agent_id=agent_id,
                    negotiation_id=f"neg_{uuid.uuid4().hex[:20]}",
                    offer_id=f"off_{uuid.uuid4().hex[:20]}",
                    challenge_id=uuid.uuid4().hex,
                    charge_point_id="CP-REAL",
                    evse_id=1,
                    id_token=uuid.uuid4().hex[:20],
                    remote_start_id=1,
                    tariff={},
                    cap=10,
                    currency="usd",
                    status="charging",
                    transaction_ref="tx-hostile",
                    payment_status="requires_capture",
                )
            )
    finally:
        await engine.dispose()
    return session_id


async def fuzz(
    station: StationProcess,
    fuzzer: AgentSigner,
    bystanders: dict[str, str],
    options: Options,
    rng: random.Random,
    report: Report,
) -> None:
    """OCPP fuzz over every version and the HTTP fuzz, while the bystanders heartbeat."""
    stop = asyncio.Event()
    honest = [
        asyncio.create_task(bystander(station, cp, version, stop, report))
        for cp, version in bystanders.items()
    ]
    fuzzers = [f"CP-FUZZ-{v[4:]}" for v in VERSIONS]
    frames = options.n(2500, 20)
    await asyncio.gather(
        *(
            fuzz_ocpp(station, cp, version, frames, random.Random(rng.random()), report)
            for cp, version in zip(fuzzers, VERSIONS, strict=True)
        ),
        fuzz_http(station, fuzzer, "CP-REAL", options.n(1500, 30), rng, report),
    )
    stop.set()
    await asyncio.gather(*honest)


async def campaign(kind: str, options: Options) -> Report:
    report = Report(kind)
    rng = random.Random(options.seed)
    with tempfile.TemporaryDirectory(prefix="hostile-") as tmp:
        workdir = Path(tmp)
        async with (
            database(kind, workdir) as url,
            station_process(
                url,
                workdir,
                nofile=options.nofile,
                http_header_timeout_s=str(options.header_timeout_s),
            ) as station,
        ):
            fuzzers = [f"CP-FUZZ-{v[4:]}" for v in VERSIONS]
            bystanders = {"CP-BY-16": "ocpp1.6", "CP-BY-201": "ocpp2.0.1"}
            fuzzer, flooder = await register(station, [*fuzzers, *bystanders, "CP-REAL"])
            report.rss_before_mib = station.rss_mib()

            if "fuzz" in options.cases:
                await fuzz(station, fuzzer, bystanders, options, rng, report)
            size = options.nofile + 76  # past the station's file limit, whatever the scale
            if "handshakes" in options.cases:
                report.exhaustion.append(await exhaust_handshakes(station, size, options.hold_s))
            if "slowloris" in options.cases:
                report.exhaustion.append(await exhaust_slowloris(station, size, options.hold_s))
            if "negotiations" in options.cases:
                report.exhaustion.append(
                    await exhaust_negotiations(
                        station, flooder, options.n(300, 30), options.hold_s, report
                    )
                )
            if "event_streams" in options.cases:
                session_id = await a_session(url, flooder.agent_id)
                report.exhaustion.append(
                    await exhaust_event_streams(
                        station, flooder, session_id, options.n(300, 10), options.hold_s, report
                    )
                )
            await asyncio.sleep(1.5)  # the last group commit
            for cp in bystanders:
                report.bystander_stored[cp] = await frame_rows_in(url, cp)
            report.rss_after_mib = station.rss_mib()
        text = station.log_text()
        report.tracebacks = text.count("Traceback (most recent call last)")
        report.log_lines = text.count("\n")
        report.emfile_lines = sum(
            1 for line in text.splitlines() if "Too many open files" in line or "accept_" in line
        )
    return report


async def run(options: Options) -> list[Report]:
    raise_own_file_limit()
    return [await campaign(kind, options) for kind in options.databases]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--database", choices=["sqlite", "postgres", "both"], default="both")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies every count")
    parser.add_argument("--nofile", type=int, default=1024, help="the station's open-file limit")
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--hold", type=float, default=12.0, help="seconds each exhaustion holds")
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, of: {', '.join(CASES)}"
    )
    args = parser.parse_args(argv)
    cases = frozenset(c.strip() for c in args.cases.split(",") if c.strip())
    if not cases or cases - set(CASES):
        parser.error(f"--cases takes some of: {', '.join(CASES)}")
    databases = ("sqlite", "postgres") if args.database == "both" else (args.database,)
    options = Options(databases, args.scale, args.nofile, args.seed, args.hold, cases=cases)
    started = time.monotonic()
    reports = asyncio.run(run(options))
    for report in reports:
        print(report.render())
        print()
    print(
        f"campaign took {time.monotonic() - started:.0f} s (seed {args.seed}, scale {args.scale})"
    )
    return 0 if all(r.clean for r in reports) else 1


if __name__ == "__main__":
    sys.exit(main())
