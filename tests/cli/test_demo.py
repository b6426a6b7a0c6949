"""`chargepay demo`: every driver ends as expected and the money adds up."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from simulators.demo import DRIVERS, Report, run_demo


async def test_the_demo_settles_every_deal_and_the_shoestring_driver_walks_away() -> None:
    seen: list[Report] = []

    report = await run_demo(seen.append)

    assert [row.driver.name for row in report.rows] == [d.name for d in DRIVERS]
    assert report.ok, [row.as_json() for row in report.rows if not row.ended_as_expected]
    assert seen, "the live display was never refreshed"
    assert {row.version for row in report.rows} == {"ocpp1.6", "ocpp2.0.1", "ocpp2.1"}
    for row in report.rows:
        if row.status == "settled":
            cap, captured, released = (Decimal(x) for x in (row.cap, row.captured, row.released))
            assert Decimal(0) < captured <= cap
            assert captured + released == cap
            assert row.energy_kwh > 0
    assert Decimal(report.totals()["captured"]) > 0


def test_demo_json_exits_zero_with_a_machine_readable_report(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "station", "demo", "--json"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
    )

    assert result.returncode == 0, result.stderr[-2000:]
    document = json.loads(result.stdout)
    assert document["ok"] is True
    assert len(document["sessions"]) == len(DRIVERS)
    assert {"energy_kwh", "captured", "released", "currency"} <= set(document["totals"])
