"""The benchmark commands run and print their figures and ratios (a smoke run, not a timing)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=240
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_the_ocpp_benchmark_prints_the_ratios_and_the_idle_memory() -> None:
    out = _run(
        "benchmarks.ocpp_throughput",
        *("--charge-points", "3", "--duration", "0.5", "--warmup", "0.2", "--rounds", "2"),
        *("--idle", "20", "--heartbeat", "0.5", "--hold", "1"),
    )

    rows = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert [(r[0], r[1]) for r in rows] == [
        (n, name) for n in ("1", "2") for name in ("bare", "plain", "station")
    ]
    assert all(float(r[2]) > 0 and r[5] == "0" for r in rows)  # messages answered, no errors
    assert "station / plain ocpp :" in out and "station / bare ws    :" in out
    assert "median (rounds: " in out
    assert "station memory with 20 idle charge points" in out


def test_the_paid_mode_settles_every_session_and_prints_its_ratios() -> None:
    out = _run(
        "benchmarks.ocpp_throughput",
        *("--charge-points", "2", "--duration", "0.5", "--warmup", "0.2", "--rounds", "1"),
        *("--skip-idle", "--paid"),
    )

    rows = [line.split() for line in out.splitlines() if line[:5].strip().isdigit()]
    assert [r[1] for r in rows] == ["bare", "plain", "station", "paid"]
    assert all(float(r[2]) > 0 and r[5] == "0" for r in rows)
    assert "paid / bare ws       :" in out and "paid / unpaid        :" in out
    # Every transaction was an agent's paid session: started by the station, costed, captured.
    assert "paid sessions settled: 2 of 2" in out
    assert "RequestStartTransaction 2" in out and "CostUpdated" in out


def test_the_payments_benchmark_prints_latencies_and_stripe_calls() -> None:
    out = _run("benchmarks.payments", "--sessions", "2")

    assert "p50" in out and "Stripe calls per settled session" in out


def test_the_reconnect_storm_benchmark_brings_every_charge_point_back() -> None:
    out = _run(
        "benchmarks.reconnect_storm",
        *("--charge-points", "6", "--processes", "2", "--backoff-max", "1", "--timeout", "120"),
    )

    assert "6 charge points connected and booted" in out
    assert "every charge point booted again  :" in out and "after the (re)start" in out
    assert "handshakes refused (401/429)     : 0" in out
    assert "baseline: 6 scrypt checks" in out and "storm / scrypt baseline" in out
    # The fleet's rows carry keyed verifiers: the restarted station needs no scrypt check.
    assert "admitted since the (re)start by  : keyed 6" in out
    # What the station and the load generators spent: the generator must not be the limit.
    assert "CPU until all were back: station :" in out and "load generators" in out


def test_the_density_benchmark_holds_its_fleet_and_prints_memory_latency_and_ratios() -> None:
    out = _run(
        "benchmarks.density",
        *("--charge-points", "6", "--processes", "2", "--source-addresses", "2"),
        *("--interval", "1", "--window", "2", "--settle", "0.5"),
    )

    assert "density: 6 charge points on one station node, 2 load processes" in out
    assert "still connected after the window :        6  (CALLERRORs: 0)" in out
    assert "RSS per charge point             :" in out and "growth over empty" in out
    assert "heartbeat latency p50 / p99      :" in out
    assert "RSS per CP / goal (25 KiB)       :" in out and "p99 / goal (50 ms)" in out
