"""A short run of the hostile-input campaign (`python -m benchmarks.hostile`), on both databases.

Fewer frames and requests than the full run, the station's file limit at
256 with the exhaustion cases past it, three seconds per case. What must
hold at any size: no 5xx, no traceback in the station's log, no bystander
frame lost, and a real charge point gets in during every exhaustion case.
"""

from __future__ import annotations

import asyncio
import os

import asyncpg
import pytest

from benchmarks import hostile


async def _postgres_reachable() -> None:
    conn = await asyncpg.connect(hostile.PG_DSN, timeout=5)
    await conn.close()


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_a_short_campaign_finds_no_5xx_no_traceback_and_no_lost_row(kind: str) -> None:
    if kind == "postgres":
        try:
            await _postgres_reachable()
        except (OSError, asyncpg.PostgresError) as exc:
            if os.environ.get("CI"):
                pytest.fail(f"PostgreSQL is required under CI: {exc}")
            pytest.skip(f"PostgreSQL unreachable: {exc}")
    options = hostile.Options((kind,), scale=0.03, nofile=256, hold_s=3.0, header_timeout_s=2.0)
    hostile.raise_own_file_limit()
    (report,) = await asyncio.wait_for(hostile.run(options), 300)
    printout = report.render()

    assert sum(report.frames_sent.values()) >= 3 * 20, printout
    assert report.requests_sent >= 30, printout
    assert report.fivexx == 0, printout
    assert report.tracebacks == 0, printout
    assert report.rows_lost == 0 and report.bystander_sent, printout
    for case in report.exhaustion:
        assert any(t == t for t in case.connect_s), f"{case.name}: no connect\n{printout}"
    assert dict(report.statuses).get(429), printout  # the ceilings did refuse the floods
