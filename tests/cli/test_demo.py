"""`chargepay demo`: every driver ends as expected and the money adds up."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

from simulators.demo import DRIVERS, Report, run_demo

INTERNAL_WORDS = ("challenge", "chosen", "walk_away", "_")


async def test_the_demo_settles_every_deal_and_the_shoestring_driver_walks_away() -> None:
    seen: list[Report] = []
    frames: list[list[tuple[str, str, str, str]]] = []

    def refresh(report: Report) -> None:
        seen.append(report)
        frames.append([(r.step, r.price_per_kwh, r.cap, r.status) for r in report.rows])

    report = await run_demo(refresh)

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
    # The live table has every row from the first refresh, before the station is up.
    assert len(frames[0]) == len(DRIVERS) and frames[0][0][0] == "starting the Stripe sandbox"
    steps = {step for frame in frames for step, *_ in frame}
    assert not [s for s in steps if any(word in s for word in INTERNAL_WORDS)], steps
    assert any(s.startswith("offered ") and "(round 1 of" in s for s in steps), steps
    for i, row in enumerate(report.rows):
        if row.status != "settled":
            continue
        # Price and cap show as soon as agreed, while the session is still running.
        assert any(f[i][1] == row.price_per_kwh and f[i][2] == row.cap and f[i][3] != "settled"
                   for f in frames), row.driver.name  # fmt: skip
        assert row.rounds >= 1
        # The final table adds up: kWh × price = energy, + fees, − what passed the cap = captured.
        price, energy_cost, fees, above_cap = map(
            Decimal, (row.price_per_kwh, row.energy_cost, row.fees, row.above_cap)
        )
        assert (row.energy_kwh * price).quantize(Decimal("0.01"), ROUND_HALF_UP) == energy_cost
        assert fees >= 0 >= above_cap
        assert energy_cost + fees + above_cap == Decimal(row.captured)


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
