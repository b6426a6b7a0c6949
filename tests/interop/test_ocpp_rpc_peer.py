"""An independent OCPP implementation drives the station: ocpp-rpc (npm) in strict mode,
which validates every frame in both directions against the official JSON schemas.

The rest of the suite speaks OCPP through the same `ocpp` library the station is
built on, so both sides could share a misreading; here the charge point is
another stack. On each version it boots, authorises, runs a priced transaction
with meter values from a remote start to a remote stop, and is sent every call
the station can send (remote start and stop, TriggerMessage, CostUpdated on
2.x; 2.1 also gets a cost limit and sends a periodic event stream as a SEND).
Not one schema violation may show, either way.

Needs Node.js and ``npm ci`` in tests/interop (`.ci/run` does it). Outside CI
the module skips without them; under CI (``CI`` set) it fails instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import shutil
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from station.app import Station
from station.store.charging import MeterSampleRow, TransactionRow
from tests.ocpp.conftest import PASSWORD
from tests.ocpp.test_billing_hooks import PricePerKwh

HERE = Path(__file__).parent
NODE = shutil.which("node")
MISSING = (
    "Node.js is not installed"
    if NODE is None
    else "ocpp-rpc is not installed: run `npm ci` in tests/interop"
    if not (HERE / "node_modules" / "ocpp-rpc").is_dir()
    else None
)
if MISSING is not None:
    if os.environ.get("CI"):
        pytest.fail(f"the independent OCPP peer cannot run under CI: {MISSING}", pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)

T0 = "2026-01-01T00:00:00.000Z"


def at(minutes: int) -> str:
    return f"2026-01-01T00:{minutes:02d}:00.000Z"


class Peer:
    """The Node charge point (peer.js), driven one JSON line at a time."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.calls: asyncio.Queue[dict[str, Any]] = asyncio.Queue()  # station-initiated
        self.violations: list[dict[str, Any]] = []
        self.costs: list[dict[str, Any]] = []  # CostUpdated payloads
        self.summary: dict[str, Any] = {}
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._ready: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        async for line in self.process.stdout:
            message = json.loads(line)
            event = message.get("event")
            if event in ("ready", "failed"):
                self._ready.set_result(message)
            elif event == "call":
                self.calls.put_nowait(message)
            elif event in ("violation", "unexpected_call"):
                self.violations.append(message)
            elif event == "summary":
                self.summary = message
            elif "id" in message:
                self._pending.pop(message["id"]).set_result(message)

    async def ready(self) -> dict[str, Any]:
        return await asyncio.wait_for(self._ready, 20)

    async def _command(self, **command: Any) -> dict[str, Any]:
        assert self.process.stdin is not None
        command_id = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        self.process.stdin.write((json.dumps({"id": command_id, **command}) + "\n").encode())
        await self.process.stdin.drain()
        return await asyncio.wait_for(future, 20)

    async def call(self, method: str, params: dict[str, Any]) -> dict[str, Any]:
        """A CALL from the charge point; its CALLRESULT (a CALLERROR fails the test)."""
        answer = await self._command(cmd="call", method=method, params=params)
        assert "error" not in answer, (method, answer["error"])
        return answer["result"]  # type: ignore[no-any-return]

    async def send(self, method: str, params: dict[str, Any]) -> None:
        answer = await self._command(cmd="send", method=method, params=params)
        assert "error" not in answer, (method, answer["error"])

    async def station_call(self, method: str) -> dict[str, Any]:
        """The next call the station sent (already answered Accepted by the peer).

        CostUpdated goes out after each commit, whenever billing has priced it,
        so it may come between any two calls: those are kept in ``costs``.
        """
        while True:
            call = await asyncio.wait_for(self.calls.get(), 20)
            if call["method"] == "CostUpdated" and method != "CostUpdated":
                self.costs.append(call["params"])
                continue
            assert call["method"] == method, call
            return call["params"]  # type: ignore[no-any-return]

    async def close(self) -> None:
        await self._command(cmd="close")
        await asyncio.wait_for(self.process.wait(), 10)
        await self._reader


@contextlib.asynccontextmanager
async def peer(station: Station, cp_id: str, protocol: str) -> AsyncIterator[Peer]:
    assert NODE is not None
    process = await asyncio.create_subprocess_exec(
        NODE,
        str(HERE / "peer.js"),
        f"ws://127.0.0.1:{station.ocpp_port}/ocpp",
        cp_id,
        PASSWORD,
        protocol,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        cwd=HERE,
    )
    charge_point = Peer(process)
    try:
        ready = await charge_point.ready()
        assert ready == {"event": "ready", "protocol": protocol}, ready
        yield charge_point
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()


async def stored(station: Station, cp_id: str) -> tuple[TransactionRow, list[MeterSampleRow]]:
    async with station.db.reader() as session:
        row = await session.scalar(
            select(TransactionRow).where(TransactionRow.charge_point_id == cp_id)
        )
        samples = (
            await session.scalars(
                select(MeterSampleRow).where(MeterSampleRow.charge_point_id == cp_id)
            )
        ).all()
        assert row is not None
        session.expunge_all()
    return row, list(samples)


async def test_an_ocpp_rpc_1_6_charge_point_runs_a_session_without_a_schema_violation(
    station: Station,
) -> None:
    station.charging.listener = PricePerKwh(commands=station.connections)

    async with peer(station, "CP-1", "ocpp1.6") as cp:
        boot = await cp.call(
            "BootNotification", {"chargePointVendor": "interop", "chargePointModel": "ocpp-rpc"}
        )
        heartbeat = await cp.call("Heartbeat", {})
        await cp.call(
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Available", "timestamp": T0},
        )
        start = asyncio.create_task(
            station.connections.start_transaction(
                "CP-1", evse_id=1, id_token="SES-16", remote_start_id=16
            )
        )
        remote_start = await cp.station_call("RemoteStartTransaction")
        assert await start
        authorised = await cp.call("Authorize", {"idTag": remote_start["idTag"]})
        started = await cp.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": remote_start["idTag"], "meterStart": 1000,
             "timestamp": T0},
        )  # fmt: skip
        transaction_id = started["transactionId"]
        for minute, wh in ((10, "2000"), (20, "3000")):
            await cp.call(
                "MeterValues",
                {"connectorId": 1, "transactionId": transaction_id, "meterValue": [
                    {"timestamp": at(minute), "sampledValue": [
                        {"value": wh, "measurand": "Energy.Active.Import.Register",
                         "unit": "Wh", "context": "Sample.Periodic"}]}]},
            )  # fmt: skip
        assert await station.connections.trigger_message("CP-1", "Heartbeat", 1)
        assert (await cp.station_call("TriggerMessage"))["requestedMessage"] == "Heartbeat"
        assert await station.connections.stop_transaction("CP-1", str(transaction_id))
        assert (await cp.station_call("RemoteStopTransaction"))["transactionId"] == transaction_id
        station.connections.post_stop_transaction("CP-1", str(transaction_id))
        await cp.station_call("RemoteStopTransaction")
        stopped = await cp.call(
            "StopTransaction",
            {"transactionId": transaction_id, "meterStop": 4000, "timestamp": at(30),
             "idTag": remote_start["idTag"], "reason": "Remote", "transactionData": [
                 {"timestamp": T0, "sampledValue": [
                     {"value": "1000", "context": "Transaction.Begin"}]},
                 {"timestamp": at(30), "sampledValue": [
                     {"value": "4000", "context": "Transaction.End"}]}]},
        )  # fmt: skip
        await cp.close()

    assert boot["status"] == "Accepted" and "currentTime" in heartbeat
    assert authorised["idTagInfo"]["status"] == "Accepted"
    assert started["idTagInfo"]["status"] == "Accepted"
    assert stopped["idTagInfo"]["status"] == "Accepted"
    assert cp.violations == []
    assert cp.summary == {"event": "summary", "violations": 0, "calls_in": 4, "calls_out": 8}
    row, _ = await stored(station, "CP-1")
    assert row.ended and row.energy_wh == Decimal(3000)


def event(kind: str, seq_no: int, minutes: int, wh: int, **extra: Any) -> dict[str, Any]:
    return {
        "eventType": kind,
        "timestamp": at(minutes),
        "triggerReason": {"Started": "RemoteStart", "Ended": "RemoteStop"}.get(
            kind, "MeterValuePeriodic"
        ),
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": "TX-1"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": at(minutes),
                "sampledValue": [
                    {
                        "value": wh,
                        "measurand": "Energy.Active.Import.Register",
                        "unitOfMeasure": {"unit": "Wh"},
                        "context": {"Started": "Transaction.Begin", "Ended": "Transaction.End"}.get(
                            kind, "Sample.Periodic"
                        ),
                    }
                ],
            }
        ],
        **extra,
    }


@pytest.mark.parametrize("protocol", ["ocpp2.0.1", "ocpp2.1"])
async def test_an_ocpp_rpc_2_x_charge_point_runs_a_session_without_a_schema_violation(
    station: Station, protocol: str
) -> None:
    station.charging.listener = PricePerKwh(commands=station.connections)
    on_21 = protocol == "ocpp2.1"

    async with peer(station, "CP-2", protocol) as cp:
        boot = await cp.call(
            "BootNotification",
            {"reason": "PowerUp", "chargingStation": {"model": "ocpp-rpc", "vendorName": "x"}},
        )
        heartbeat = await cp.call("Heartbeat", {})
        await cp.call(
            "StatusNotification",
            {"timestamp": T0, "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        )
        start = asyncio.create_task(
            station.connections.start_transaction(
                "CP-2", evse_id=1, id_token="SES-2X", remote_start_id=21,
                max_cost=Decimal("9.5") if on_21 else None,
            )
        )  # fmt: skip
        remote_start = await cp.station_call("RequestStartTransaction")
        assert await start
        token = remote_start["idToken"]
        authorised = await cp.call("Authorize", {"idToken": token})
        started = await cp.call(
            "TransactionEvent",
            event("Started", 0, 0, 1000, idToken=token, transactionInfo={
                "transactionId": "TX-1", "remoteStartId": remote_start["remoteStartId"]}),
        )  # fmt: skip
        updated = [
            await cp.call("TransactionEvent", event("Updated", seq_no, seq_no * 10, wh))
            for seq_no, wh in ((1, 2000), (2, 3000))
        ]
        cp.costs.append(await cp.station_call("CostUpdated"))  # billing's running cost
        station.connections.post_cost_updated("CP-2", "TX-1", Decimal("1.2345"))
        await cp.call("MeterValues", {"evseId": 1, "meterValue": event("Updated", 3, 25, 3500)[
            "meterValue"]})  # fmt: skip
        assert await station.connections.trigger_message("CP-2", "MeterValues", 1)
        assert (await cp.station_call("TriggerMessage"))["requestedMessage"] == "MeterValues"
        if on_21:
            opened = await cp.call(
                "OpenPeriodicEventStream",
                {"constantStreamData": {"id": 1, "variableMonitoringId": 5,
                                        "params": {"interval": 1, "values": 2}}},
            )  # fmt: skip
            await cp.send(
                "NotifyPeriodicEventStream",
                {"id": 1, "pending": 0, "basetime": T0,
                 "data": [{"t": 0, "v": "231.2"}, {"t": 1, "v": "230.9"}]},
            )  # fmt: skip
            await cp.call("ClosePeriodicEventStream", {"id": 1})
            assert opened["status"] == "Accepted"
        assert await station.connections.stop_transaction("CP-2", "TX-1")
        assert (await cp.station_call("RequestStopTransaction"))["transactionId"] == "TX-1"
        station.connections.post_stop_transaction("CP-2", "TX-1")
        await cp.station_call("RequestStopTransaction")
        ended = await cp.call(
            "TransactionEvent",
            event("Ended", 3, 30, 4000, transactionInfo={
                "transactionId": "TX-1", "stoppedReason": "Remote"}),
        )  # fmt: skip
        await cp.close()
        while not cp.calls.empty():
            cp.costs.append(cp.calls.get_nowait()["params"])

    assert boot["status"] == "Accepted" and "currentTime" in heartbeat
    assert authorised["idTokenInfo"]["status"] == "Accepted"
    assert started["idTokenInfo"]["status"] == "Accepted"
    assert all("totalCost" not in reply for reply in (started, *updated))
    assert ended["totalCost"] == 1.5  # 3 kWh at 0.50
    assert {c["transactionId"] for c in cp.costs} == {"TX-1"}
    assert 1.2345 in [c["totalCost"] for c in cp.costs]
    if on_21:
        assert started["transactionLimit"] == {"maxCost": 9.5}
    assert cp.violations == []
    assert cp.summary["violations"] == 0
    row, samples = await stored(station, "CP-2")
    assert row.ended and row.energy_wh == Decimal(3000)
    streamed = sorted(s.value for s in samples if s.measurand == "Monitor.5")
    assert streamed == ([Decimal("230.9"), Decimal("231.2")] if on_21 else [])


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1", "ocpp2.1"])
async def test_the_peer_s_strict_mode_refuses_a_frame_that_breaks_the_schema(
    station: Station, protocol: str
) -> None:
    async with peer(station, "CP-3", protocol) as cp:
        answer = await cp._command(cmd="call", method="Heartbeat", params={"bogus": 1})
        await cp.close()

    assert "error" in answer
    assert [(v["outbound"], v["method"]) for v in cp.violations] == [(True, "Heartbeat")]
