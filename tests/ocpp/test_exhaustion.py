"""The OCPP port under exhaustion: half-open handshakes and file descriptors running out.

The station runs as its own process with a lowered open-file limit, so these
sizes exhaust it on any machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from simulators.ports import free_port
from station.store.charging import register_charge_points
from station.store.db import Database
from tests.ocpp.conftest import PASSWORD, basic
from tests.ocpp.station_process import station_process

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
METRICS_TOKEN = "exhaustion-metrics-Wq8zK3xN7pL2vR9t"


async def scrape(http_port: int, name: str, **labels: str) -> float:
    """One figure of the station's /metrics (0 when absent), with the scraper's token."""
    async with httpx.AsyncClient(timeout=5) as client:
        auth = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        text = (await client.get(f"http://127.0.0.1:{http_port}/metrics", headers=auth)).text
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    selector = re.escape(f"{name}{{{inner}}}" if labels else name)
    match = re.search(rf"^{selector} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def register(database_url: str, ids: list[str]) -> None:
    db = Database(database_url)
    try:
        await db.upgrade()
        await register_charge_points(db, [(cp, PASSWORD) for cp in ids])
    finally:
        await db.dispose()


async def heartbeat(ocpp_port: int, cp_id: str, open_timeout: float) -> list:
    async with connect(
        f"ws://127.0.0.1:{ocpp_port}/ocpp/{cp_id}",
        subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
        additional_headers=basic(cp_id, PASSWORD),
        open_timeout=open_timeout,
    ) as ws:
        await ws.send(json.dumps([2, "hb", "Heartbeat", {}]))
        return json.loads(await asyncio.wait_for(ws.recv(), 5))


async def half_open(ocpp_port: int, slowloris: bool, writers: list[asyncio.StreamWriter]) -> None:
    """A connection that never completes its request (or never starts it)."""
    with contextlib.suppress(OSError):
        _, writer = await asyncio.open_connection("127.0.0.1", ocpp_port)
        if slowloris:
            writer.write(b"GET /ocpp/CP-1 HTTP/1.1\r\nHost: x\r\n")
        writers.append(writer)


async def test_half_open_handshakes_do_not_keep_a_real_charge_point_out(
    database_url: str,
) -> None:
    await register(database_url, ["CP-1"])
    http_port, ocpp_port = free_port(), free_port()
    writers: list[asyncio.StreamWriter] = []

    env = {"CHARGEPAY_METRICS_TOKEN": METRICS_TOKEN}
    async with station_process(database_url, http_port, ocpp_port, env=env, open_files=128):
        try:
            await asyncio.gather(*(half_open(ocpp_port, n % 2 == 1, writers) for n in range(300)))
            await asyncio.sleep(0.5)
            started = time.perf_counter()
            reply = await heartbeat(ocpp_port, "CP-1", open_timeout=5)
            elapsed = time.perf_counter() - started
        finally:
            for writer in writers:
                writer.close()
        await asyncio.sleep(0.2)
        shed = await scrape(http_port, "chargepay_ocpp_handshakes_shed_total")
        accept_errors = await scrape(http_port, "chargepay_accept_errors_total", port="ocpp")

    assert len(writers) > 128  # more than the station's descriptors
    assert reply[:2] == [3, "hb"]
    assert elapsed < 5
    # Room was made by shedding silent half-open connections, and it shows.
    assert shed >= 1
    assert accept_errors >= 1


async def refused_after_the_delay(ocpp_port: int) -> int:
    try:
        async with connect(
            f"ws://127.0.0.1:{ocpp_port}/ocpp/CP-1",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            open_timeout=15,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_running_out_of_descriptors_is_logged_once_per_interval_with_a_count(
    database_url: str, tmp_path: Path
) -> None:
    await register(database_url, ["CP-1"])
    http_port, ocpp_port = free_port(), free_port()
    log = tmp_path / "station.log"
    # Each refusal waits 2 s, holding its descriptor: 150 of them exhaust 100.
    env = {
        "CHARGEPAY_OCPP_ACCEPT_LOG_INTERVAL_S": "1",
        "CHARGEPAY_OCPP_AUTH_FREE_FAILURES": "0",
        "CHARGEPAY_OCPP_AUTH_FAILURE_DELAY_S": "2",
        "CHARGEPAY_OCPP_AUTH_FAILURE_MAX_DELAY_S": "2",
        "CHARGEPAY_METRICS_TOKEN": METRICS_TOKEN,
    }

    async with station_process(
        database_url, http_port, ocpp_port, log=log, env=env, open_files=100
    ):
        started = time.perf_counter()
        refusals = await asyncio.gather(*(refused_after_the_delay(ocpp_port) for _ in range(150)))
        elapsed = time.perf_counter() - started
        reply = await heartbeat(ocpp_port, "CP-1", open_timeout=5)
        await asyncio.sleep(1.5)  # let the last interval's line out
        accept_errors = await scrape(http_port, "chargepay_accept_errors_total", port="ocpp")
        refused = await scrape(
            http_port, "chargepay_ocpp_login_refusals_total", reason="unauthorized"
        )
    text = log.read_text(errors="replace")

    lines = [line for line in text.splitlines() if "ocpp.accept_exhausted" in line]
    counts = [int(m.group(1)) for m in map(re.compile(r"failures=(\d+)").search, lines) if m]
    assert set(refusals) == {401}
    assert reply[:2] == [3, "hb"]
    assert "out of system resource" not in text and "Traceback" not in text
    assert 1 <= len(lines) <= elapsed + 3 and len(counts) == len(lines)
    assert all(n >= 1 for n in counts)
    assert accept_errors >= sum(counts)  # every failure counted, logged or not yet
    assert refused == 150
