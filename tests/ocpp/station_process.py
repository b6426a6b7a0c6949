"""The station as a real process (`python -m station serve`), for crash and signal tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import resource
import sys
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

import httpx

from simulators.battery import Battery
from simulators.charge_point import SimulatedChargePoint
from tests.ocpp.conftest import PASSWORD


def restartable_charge_point(ocpp_port: int, version: str) -> tuple[SimulatedChargePoint, Battery]:
    """CP-1 for a station that goes away mid-transaction: fast time, quick reconnects."""
    sim = SimulatedChargePoint(
        f"ws://127.0.0.1:{ocpp_port}/ocpp", "CP-1", PASSWORD, version,
        time_scale=200, meter_interval_s=30, reconnect_max_s=0.2, meter_start_wh=500,
    )  # fmt: skip
    return sim, Battery(capacity_kwh=Decimal(6), soc=Decimal("0.2"), max_power_kw=Decimal(50))


@contextlib.asynccontextmanager
async def station_process(
    database_url: str,
    http_port: int,
    ocpp_port: int,
    *,
    log: Path | None = None,
    env: dict[str, str] | None = None,
    open_files: int | None = None,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start the station, wait until /healthz answers, kill it on exit if still running.

    With ``log``, its output (INFO, key=value) goes to that file; ``env`` adds
    variables; ``open_files`` lowers its RLIMIT_NOFILE.
    """
    variables = {
        **os.environ,
        "CHARGEPAY_DATABASE_URL": database_url,
        "CHARGEPAY_HTTP_PORT": str(http_port),
        "CHARGEPAY_OCPP_PORT": str(ocpp_port),
        "CHARGEPAY_LOG_LEVEL": "INFO" if log else "WARNING",
        "CHARGEPAY_LOG_FORMAT": "text",
        # The tests drive the OCPP pipeline with the charge points' own tags.
        "CHARGEPAY_OCPP_FREE_VEND": "true",
        "CHARGEPAY_ADMIN_TOKEN": "test-admin-token-0123456789",
        "CHARGEPAY_SECRET_KEY": "test-secret-key-0123456789abcdef",
        # `serve` refuses to start without a Stripe key; nothing here pays.
        "CHARGEPAY_STRIPE_API_KEY": "sk_test_station_process_0123",
        "CHARGEPAY_STRIPE_API_BASE": "http://127.0.0.1:9",
        **(env or {}),
    }

    def limit_open_files() -> None:
        if open_files is not None:
            resource.setrlimit(resource.RLIMIT_NOFILE, (open_files, open_files))

    with contextlib.ExitStack() as files:
        out: IO[Any] | int = (
            files.enter_context(log.open("wb")) if log else asyncio.subprocess.DEVNULL
        )
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "station", "serve", env=variables, stdout=out, stderr=out,
            preexec_fn=limit_open_files,
        )  # fmt: skip
    try:
        async with httpx.AsyncClient() as client, asyncio.timeout(30):
            while True:
                with contextlib.suppress(httpx.TransportError):
                    health = await client.get(f"http://127.0.0.1:{http_port}/healthz")
                    if health.status_code == 200:
                        break
                assert proc.returncode is None, "the station exited"
                await asyncio.sleep(0.05)
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()
