"""Density: how many connected charge points one station node holds, and what each costs.

    python -m benchmarks.density [--charge-points 2000] [--interval 10] [--window 20]
    python -m benchmarks.density --charge-points 50000 --processes 4 --interval 60 --window 120

Registers N charge points, starts ``chargepay serve`` as a process with its
open-file limit raised as far as the hard limit allows, and connects the fleet
from ``--processes`` load-generator processes spread over ``--source-addresses``
loopback addresses (127.0.0.2, 127.0.0.3, …) so the ephemeral port range is not
the limit. Each charge point boots (OCPP 2.0.1) and then heartbeats at the
interval the BootNotification answer gives it (``--interval``, set on the
station), its first heartbeat at a random phase so the load is even.

The load generator is a minimal websocket client on asyncio protocols (no
task per connection, a zero mask, pings answered), so that 50,000 of them fit
in a few processes and the station is what is measured.

Once every charge point is up it prints the station's resident memory per
connected charge point (KiB: all of it divided by N; the growth over the
empty station divided by N; and what the second half of the fleet added, per
charge point, which leaves out one-off costs such as the allocator's arenas),
the heartbeat latency p50/p99 over ``--window`` seconds, and the ratios to
the goals (≤ 25 KiB per charge point, p99 < 50 ms).
A process holds at most RLIMIT_NOFILE descriptors: when the hard limit (which
only CAP_SYS_RESOURCE may raise) is below N the run says so and holds what fits.
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
import signal
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GOAL_KIB, GOAL_P99_MS = 25.0, 50.0
BOOT = {"reason": "PowerUp", "chargingStation": {"model": "bench", "vendorName": "chargepay"}}
SPARE_FDS = 200  # the station's own: database, listeners, logs, the interpreter


def raise_open_files() -> int:
    """Raise the soft open-file limit to the hard one (as far as this process may)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def try_raise_hard_limit(wanted: int) -> str | None:
    """Try to raise the hard limit to ``wanted``; None on success, else why not."""
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    if hard >= wanted:
        return None
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, wanted))
        return None
    except (ValueError, OSError) as exc:
        nr_open = Path("/proc/sys/fs/nr_open").read_text().strip()
        caps = next(
            (line.split()[1] for line in Path("/proc/self/status").read_text().splitlines()
             if line.startswith("CapEff:")), "?",
        )  # fmt: skip
        has = caps != "?" and bool(int(caps, 16) >> 24 & 1)
        return (
            f"RLIMIT_NOFILE hard limit is {hard} and setrlimit({wanted}) failed ({exc}); "
            f"fs.nr_open is {nr_open}, CAP_SYS_RESOURCE is {'held' if has else 'not held'} "
            f"(CapEff {caps})"
        )


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


# --- the load generator (a child process) ---------------------------------------------


class Fleet:
    def __init__(self, interval_s: float, compression: bool) -> None:
        self.interval_s = interval_s
        self.compression = compression
        self.up = 0
        self.closed = 0
        self.errors = 0
        self.measuring = False
        self.latencies_us: list[int] = []


class ChargePoint(asyncio.Protocol):
    """One charge point: handshake, BootNotification, then a Heartbeat every interval."""

    def __init__(self, fleet: Fleet, host: str, path: str, cp_id: str, password: str) -> None:
        self.fleet = fleet
        self.request = (
            f"GET {path}/{cp_id} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}\r\n"
            "Sec-WebSocket-Protocol: ocpp2.0.1\r\n"
            + (
                "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
                if fleet.compression
                else ""
            )
            + "Authorization: Basic "
            f"{base64.b64encode(f'{cp_id}:{password}'.encode()).decode()}\r\n\r\n"
        ).encode()
        self.buffer = b""
        self.open = False
        self.transport: asyncio.Transport | None = None
        self.sent_at = 0.0
        self.n = 0
        self.booted = asyncio.get_running_loop().create_future()
        self.timer: asyncio.TimerHandle | None = None
        self.inflate: Any = None  # the station's frames, when it compresses them

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        if self.open:
            self.fleet.closed += 1
        if not self.booted.done():
            self.booted.set_exception(ConnectionError("closed before booting"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if not self.open:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head, self.buffer = self.buffer[:end], self.buffer[end + 4 :]
            if not head.startswith(b"HTTP/1.1 101"):
                self.booted.set_exception(ConnectionError(head.split(b"\r\n", 1)[0].decode()))
                assert self.transport is not None
                self.transport.close()
                return
            self.open = True
            if b"permessage-deflate" in head.lower():
                self.inflate = zlib.decompressobj(-15)
            self.call("boot", "BootNotification", BOOT)
        while len(self.buffer) >= 2:
            opcode, length = self.buffer[0] & 0x0F, self.buffer[1] & 0x7F
            compressed = bool(self.buffer[0] & 0x40)
            start = 2
            if length == 126:
                if len(self.buffer) < 4:
                    return
                (length,) = struct.unpack("!H", self.buffer[2:4])
                start = 4
            elif length == 127:
                if len(self.buffer) < 10:
                    return
                (length,) = struct.unpack("!Q", self.buffer[2:10])
                start = 10
            if len(self.buffer) < start + length:
                return
            payload, self.buffer = (
                self.buffer[start : start + length],
                self.buffer[start + length :],
            )
            if opcode == 0x1:
                if compressed:
                    payload = self.inflate.decompress(payload + b"\x00\x00\xff\xff")
                self.on_message(json.loads(payload))
            elif opcode == 0x9:
                self.frame(0xA, payload)
            elif opcode == 0x8 and self.transport is not None:
                self.transport.close()

    def frame(self, opcode: int, payload: bytes) -> None:
        """A client frame, masked with a zero key (the payload goes as it is)."""
        n = len(payload)
        head = (
            struct.pack("!BB", 0x80 | opcode, 0x80 | n)
            if n < 126
            else struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        )
        assert self.transport is not None
        self.transport.write(head + b"\x00\x00\x00\x00" + payload)

    def call(self, unique_id: str, action: str, payload: Mapping[str, object]) -> None:
        self.sent_at = time.perf_counter()
        self.frame(0x1, json.dumps([2, unique_id, action, payload]).encode())

    def on_message(self, message: list[object]) -> None:
        if message[0] == 2:  # a call from the station: accept it
            self.frame(0x1, json.dumps([3, message[1], {"status": "Accepted"}]).encode())
            return
        if message[0] == 4:
            self.fleet.errors += 1
        if message[1] == "boot":
            if not self.booted.done():
                self.booted.set_result(None)
            interval = self.fleet.interval_s
            self.schedule(random.uniform(0, interval))
        elif self.fleet.measuring:
            self.fleet.latencies_us.append(int((time.perf_counter() - self.sent_at) * 1e6))

    def schedule(self, delay_s: float) -> None:
        self.timer = asyncio.get_running_loop().call_later(delay_s, self.heartbeat)

    def heartbeat(self) -> None:
        self.n += 1
        self.call(f"hb{self.n}", "Heartbeat", {})
        self.schedule(self.fleet.interval_s)


async def fleet(args: list[str]) -> None:
    """Child: connect charge points BENCH-first …, report UP, measure on stdin's word."""
    port, first, count, password, addresses, interval, compression = args
    raise_open_files()
    state = Fleet(float(interval), compression == "1")
    loop = asyncio.get_running_loop()
    sources = addresses.split(",")
    gate = asyncio.Semaphore(100)
    points: list[ChargePoint] = []

    async def one(i: int) -> None:
        cp_id = f"BENCH-{int(first) + i:05d}"
        for _attempt in range(5):
            async with gate:
                try:
                    _, point = await loop.create_connection(
                        lambda: ChargePoint(state, f"127.0.0.1:{port}", "/ocpp", cp_id, password),
                        "127.0.0.1", int(port), local_addr=(sources[i % len(sources)], 0),
                    )  # fmt: skip
                    await asyncio.wait_for(point.booted, 120)
                    points.append(point)
                    state.up += 1
                    return
                except (OSError, TimeoutError) as exc:
                    print(f"RETRY {cp_id} {exc}", file=sys.stderr, flush=True)
            await asyncio.sleep(1)

    async def report() -> None:
        while True:
            print(f"UP {state.up} {state.closed} {state.errors}", flush=True)
            await asyncio.sleep(0.5)

    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    reporter = asyncio.create_task(report())
    async with asyncio.TaskGroup() as tasks:
        for i in range(int(count)):
            tasks.create_task(one(i))
    async for line in reader:
        word = line.strip()
        if word == b"MEASURE":
            state.latencies_us.clear()
            state.measuring = True
        elif word == b"REPORT":
            state.measuring = False
            print("LAT " + " ".join(map(str, state.latencies_us)), flush=True)
        elif word == b"QUIT":
            break
    reporter.cancel()
    for point in points:
        if point.transport is not None:
            point.transport.abort()


# --- the orchestrator ------------------------------------------------------------------


class Generator:
    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.up = self.closed = self.errors = 0
        self.latencies: asyncio.Future[list[int]] = asyncio.get_running_loop().create_future()

    async def read(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            if line.startswith(b"UP "):
                self.up, self.closed, self.errors = map(int, line.split()[1:4])
            elif line.startswith(b"LAT") and not self.latencies.done():
                self.latencies.set_result([int(x) for x in line.split()[1:]])

    def say(self, word: str) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(word.encode() + b"\n")


def quantile(values: list[int], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] / 1000 if ordered else 0.0


async def run(args: argparse.Namespace) -> int:
    from benchmarks.reconnect_storm import Station, register

    asked = args.charge_points
    why = try_raise_hard_limit(asked + SPARE_FDS)
    limit = raise_open_files()
    n = min(asked, limit - SPARE_FDS)
    if n < asked:
        print(f"{asked} charge points asked, {n} held: {why}")
    per_process = limit - SPARE_FDS
    processes = max(args.processes, -(-n // per_process))
    addresses = [f"127.0.0.{k}" for k in range(2, args.source_addresses + 2)]
    ids = [f"BENCH-{i:05d}" for i in range(n)]
    password = secrets.token_urlsafe(18)[:24]
    with tempfile.TemporaryDirectory() as tmp:
        station = Station(tmp)
        station.env["CHARGEPAY_OCPP_HEARTBEAT_INTERVAL_S"] = str(args.interval)
        env = station.env  # each row carries its keyed verifier, as a fleet's rows do
        await register(env["CHARGEPAY_DATABASE_URL"], ids, password, env["CHARGEPAY_SECRET_KEY"])
        await station.start()
        assert station.proc is not None
        pid = station.proc.pid
        empty_kib = rss_kib(pid)
        generators: list[Generator] = []
        readers: list[asyncio.Task[None]] = []
        started = time.perf_counter()
        try:
            share = -(-n // processes)
            for p in range(processes):
                first, count = p * share, min(share, n - p * share)
                if count <= 0:
                    break
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "benchmarks.density", "--fleet",
                    str(station.ocpp_port), str(first), str(count), password,
                    ",".join(addresses), str(args.interval), str(int(args.compression)),
                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, limit=2**26,
                )  # fmt: skip
                generators.append(Generator(proc))
                readers.append(asyncio.create_task(generators[-1].read()))
            half_kib = half_n = 0  # RSS at half the fleet: the second half's cost is marginal
            while sum(g.up for g in generators) < n:
                if not half_kib and sum(g.up for g in generators) >= n // 2:
                    half_kib, half_n = rss_kib(pid), sum(g.up for g in generators)
                if time.perf_counter() - started > args.timeout:
                    print(f"only {sum(g.up for g in generators)} of {n} connected")
                    return 1
                if any(g.proc.returncode is not None for g in generators):
                    print("a load generator died")
                    return 1
                await asyncio.sleep(0.5)
            connected_s = time.perf_counter() - started
            await asyncio.sleep(args.settle)
            for g in generators:
                g.say("MEASURE")
            rss = [rss_kib(pid)]
            window_end = time.perf_counter() + args.window
            while time.perf_counter() < window_end:
                await asyncio.sleep(min(5.0, args.window))
                rss.append(rss_kib(pid))
            for g in generators:
                g.say("REPORT")
            latencies = [x for g in generators for x in await asyncio.wait_for(g.latencies, 60)]
            held = sum(g.up - g.closed for g in generators)
            errors = sum(g.errors for g in generators)
            for g in generators:
                g.say("QUIT")
        finally:
            for g in generators:
                with contextlib.suppress(ProcessLookupError):
                    g.proc.send_signal(signal.SIGTERM)
            for g in generators:
                await g.proc.wait()
            for reader in readers:
                reader.cancel()
            await station.stop()
    peak = max(rss)
    per_cp = peak / n
    growth = (peak - empty_kib) / n
    marginal = (rss[0] - half_kib) / max(1, n - half_n) if half_kib else growth
    p50, p99 = quantile(latencies, 0.5), quantile(latencies, 0.99)
    print(f"\ndensity: {n} charge points on one station node, {len(generators)} load processes, "
          f"{len(addresses)} source addresses; heartbeat every {args.interval:g} s"
          f"{'; permessage-deflate' if args.compression else ''}")  # fmt: skip
    print(f"  connected and booted in          : {connected_s:8.1f} s")
    print(f"  still connected after the window : {held:8d}  (CALLERRORs: {errors})")
    print(f"  station RSS                      : {peak / 1024:8.1f} MiB "
          f"(empty station {empty_kib / 1024:.1f} MiB)")  # fmt: skip
    print(f"  RSS per charge point             : {per_cp:8.1f} KiB  (growth over empty: "
          f"{growth:.1f} KiB; second half of the fleet: {marginal:.1f} KiB)")  # fmt: skip
    print(f"  {f'heartbeats in the {args.window:g} s window':33}: {len(latencies):8d}")
    print(f"  heartbeat latency p50 / p99      : {p50:8.2f} / {p99:.2f} ms")
    print(f"  {f'RSS per CP / goal ({GOAL_KIB:g} KiB)':33}: {per_cp / GOAL_KIB:8.2f}")
    print(f"  {f'p99 / goal ({GOAL_P99_MS:g} ms)':33}: {p99 / GOAL_P99_MS:8.2f}")
    return 0 if held == n and latencies else 1


def main() -> int:
    if sys.argv[1:2] == ["--fleet"]:
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(fleet(sys.argv[2:9]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--charge-points", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=2, help="load-generator processes")
    parser.add_argument("--source-addresses", type=int, default=4, help="127.0.0.2 … (K+1)")
    parser.add_argument("--interval", type=int, default=10, help="heartbeat interval (s)")
    parser.add_argument("--window", type=float, default=20.0, help="latency window (s)")
    parser.add_argument("--settle", type=float, default=2.0, help="wait before measuring (s)")
    parser.add_argument(
        "--compression", action="store_true", help="charge points offer permessage-deflate"
    )
    parser.add_argument("--timeout", type=float, default=900.0, help="give up connecting after")
    return asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    sys.exit(main())
