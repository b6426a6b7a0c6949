"""Answers to no call in flight are dropped and counted: a flood of them stores
nothing, holds no memory, and the next station-initiated call works (issue 15 item 2)."""

from __future__ import annotations

import asyncio
import ctypes
import gc
import json
from pathlib import Path

import pytest
from sqlalchemy import func, select
from websockets.asyncio.client import ClientConnection

from station.app import Station, running_station
from station.errors import ChargePointTimeout
from station.store.charging import OcppMessageRow
from tests.ocpp.conftest import registered, settings_for
from tests.ocpp.test_bad_input import raw

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

FRAMES = 1_500
FRAME_BYTES = 100_000


def rss_mib() -> float:
    """Resident memory once freed memory is handed back (glibc keeps freed blocks)."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")  # pragma: no cover


def unsolicited(station: Station) -> float:
    total = 0.0
    for metric in station.metrics.ocpp_unsolicited.collect():
        total += sum(sample.value for sample in metric.samples if sample.name.endswith("_total"))
    return total


async def answer_calls(ws: ClientConnection, seen: list[str]) -> None:
    """Play the charge point's side: accept every call the station sends."""
    async for text in ws:
        frame = json.loads(text)
        if frame[0] == 2:
            seen.append(frame[2])
            await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))


async def test_a_flood_of_unsolicited_answers_is_dropped_and_the_next_call_works(
    station: Station, ocpp_url: str
) -> None:
    filler = "x" * FRAME_BYTES
    seen: list[str] = []

    async with await raw(ocpp_url, "CP-1", "ocpp2.0.1") as ws:
        reader = asyncio.create_task(answer_calls(ws, seen))
        before = rss_mib()
        for i in range(FRAMES):
            kind = 3 if i % 2 else 4
            body = [{"data": filler}] if kind == 3 else ["GenericError", "x", {"data": filler}]
            await ws.send(json.dumps([kind, f"stray-{i}", *body]))
        async with asyncio.timeout(60):
            while unsolicited(station) < FRAMES:  # noqa: ASYNC110 (a metric has no event)
                await asyncio.sleep(0.05)
        grown = rss_mib() - before
        async with asyncio.timeout(20):
            accepted = await station.connections.start_transaction(
                "CP-1", evse_id=1, id_token="T", remote_start_id=7
            )
        reader.cancel()
    await asyncio.sleep(0.3)

    assert accepted and seen == ["RequestStartTransaction"]
    assert unsolicited(station) == FRAMES
    assert grown < 50, f"RSS grew {grown:.0f} MiB over {FRAMES} frames of {FRAME_BYTES} bytes"
    async with station.db.reader() as session:
        stored = await session.scalar(
            select(func.count())
            .select_from(OcppMessageRow)
            .where(OcppMessageRow.message_id.like("stray-%"))
        )
    assert stored == 0


async def test_a_late_answer_after_a_timeout_is_dropped_and_the_next_call_gets_its_own(
    database_url: str,
) -> None:
    await registered(database_url)

    async with (
        running_station(settings_for(database_url, ocpp_call_timeout_s=0.3)) as station,
        await raw(f"ws://127.0.0.1:{station.ocpp_port}/ocpp", "CP-1", "ocpp2.0.1") as ws,
    ):
        first = asyncio.create_task(station.connections.trigger_message("CP-1", "Heartbeat"))
        call = json.loads(await ws.recv())
        with pytest.raises(ChargePointTimeout):
            await first
        await ws.send(json.dumps([3, call[1], {"status": "Rejected"}]))  # too late
        second = asyncio.create_task(station.connections.trigger_message("CP-1", "Heartbeat"))
        call_2 = json.loads(await ws.recv())
        await ws.send(json.dumps([3, call_2[1], {"status": "Accepted"}]))
        accepted = await asyncio.wait_for(second, 5)

        assert call_2[1] != call[1]
        assert accepted is True
        assert unsolicited(station) == 1
