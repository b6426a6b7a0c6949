"""SQLite is one node's: a second `serve` on the same file is refused (issue 11 item 5)."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from simulators.ports import free_port
from tests.ocpp.station_process import station_process


async def test_a_second_serve_on_the_same_sqlite_file_exits_2_with_one_line(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'station.db'}"
    async with station_process(url, free_port(), free_port()):
        second = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "station", "serve",
            env={
                **os.environ,
                "CHARGEPAY_DATABASE_URL": url,
                "CHARGEPAY_HTTP_PORT": str(free_port()),
                "CHARGEPAY_OCPP_PORT": str(free_port()),
                "CHARGEPAY_ADMIN_TOKEN": "test-admin-token-0123456789",
                "CHARGEPAY_SECRET_KEY": "test-secret-key-0123456789abcdef",
                "CHARGEPAY_STRIPE_API_KEY": "sk_test_station_process_0123",
            },
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, err = await asyncio.wait_for(second.communicate(), 30)
    assert second.returncode == 2, (out, err)
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1 and "SQLite is single-node" in lines[0], lines
    assert "Traceback" not in err.decode()
