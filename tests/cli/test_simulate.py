"""`chargepay simulate`: a fleet of simulated charge points of chosen versions against a station."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.conftest import ADMIN_TOKEN


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'station.db'}"


async def test_simulate_registers_a_fleet_of_three_versions_and_charges_each(
    make_world: Callable[..., Any], tmp_path: Path
) -> None:
    async with make_world(ocpp_free_vend=True) as world:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "station", "simulate",
            "--station", world.ocpp, "--admin-url", world.http, "--register",
            "--count", "3", "--prefix", "FLEET-",
            "--version", "1.6", "--version", "2.0.1", "--version", "2.1",
            "--id-token", "DEPOT", "--battery-kwh", "20", "--soc", "0.5", "--json",
            env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path),
                 "CHARGEPAY_ADMIN_TOKEN": ADMIN_TOKEN},
            cwd=tmp_path, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(process.communicate(), 120)
        listed = (await world.admin.get("/v1/admin/charge-points")).json()

    assert process.returncode == 0, err.decode()[-3000:]
    report = json.loads(out)
    assert [(r["charge_point_id"], r["ocpp_version"]) for r in report] == [
        ("FLEET-1", "ocpp1.6"), ("FLEET-2", "ocpp2.0.1"), ("FLEET-3", "ocpp2.1"),
    ]  # fmt: skip
    assert all(r["sessions"] == 1 and Decimal(r["energy_kwh"]) > 0 for r in report), report
    assert {p["charge_point_id"] for p in listed} >= {"FLEET-1", "FLEET-2", "FLEET-3"}
    assert "sessions" in err.decode()  # the progress display went to stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--station", "not-a-url", "--password", "x" * 20], "not a WebSocket URL"),
        (["--version", "1.5", "--password", "x" * 20], "'1.5' is not an OCPP version"),
        ([], "--password"),
    ],
)
def test_simulate_refuses_bad_arguments_in_one_line(
    args: list[str], says: str, tmp_path: Path
) -> None:
    from tests.cli.test_errors import assert_one_line, chargepay

    assert_one_line(chargepay("simulate", *args, env={}, cwd=tmp_path), says)
