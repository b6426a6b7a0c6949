import base64
import stat
from pathlib import Path

import platformdirs
import pytest
from typer.testing import CliRunner

from vehicle.cli import DEFAULT_SPEND_RECORD, agent_app
from vehicle.signing import load_private_key, public_key_b64

runner = CliRunner()


def test_keygen_writes_a_private_key_and_prints_the_public_key(tmp_path: Path) -> None:
    key_file = tmp_path / "agent.pem"

    result = runner.invoke(agent_app, ["keygen", "--out", str(key_file)])

    assert result.exit_code == 0, result.output
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    printed = result.stdout.strip().splitlines()[-1]
    assert printed == public_key_b64(load_private_key(key_file))
    assert len(base64.b64decode(printed)) == 32


def test_keygen_will_not_overwrite_a_key_unless_forced(tmp_path: Path) -> None:
    key_file = tmp_path / "agent.pem"
    runner.invoke(agent_app, ["keygen", "--out", str(key_file)])

    refused = runner.invoke(agent_app, ["keygen", "--out", str(key_file)])
    forced = runner.invoke(agent_app, ["keygen", "--out", str(key_file), "--force"])

    assert refused.exit_code == 2 and "exists" in refused.stderr
    assert forced.exit_code == 0


def _charge(tmp_path: Path, *extra: str, limits: bool = True) -> list[str]:
    key_file = tmp_path / "agent.pem"
    if not key_file.exists():
        runner.invoke(agent_app, ["keygen", "--out", str(key_file)])
    return [
        "charge", "--station", "http://127.0.0.1:9", "--charge-point", "CP-1",
        "--energy", "30", "--agent-id", "agt_x", "--key", str(key_file),
        "--spend-record", str(tmp_path / "spend.json"),
        *(["--limit-session", "40", "--limit-day", "100"] if limits else []), *extra,
    ]  # fmt: skip


@pytest.mark.parametrize("given", [[], ["--limit-session", "40"], ["--limit-day", "100"]])
def test_charge_wants_both_spend_limits_explicitly(tmp_path: Path, given: list[str]) -> None:
    result = runner.invoke(
        agent_app,
        _charge(tmp_path, "--budget", "20", "--payment-method", "pm_x", *given, limits=False),
    )

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "is required" in result.stderr
    missing = "--limit-day" if given == ["--limit-session", "40"] else "--limit-session"
    assert missing in result.stderr


def test_the_spend_record_lives_in_the_platform_state_directory() -> None:
    assert platformdirs.user_state_path("chargepay-agent") / "spend.json" == DEFAULT_SPEND_RECORD


def test_charge_wants_exactly_one_payment_instrument(tmp_path: Path) -> None:
    neither = runner.invoke(agent_app, _charge(tmp_path, "--budget", "20"))
    both = runner.invoke(
        agent_app, _charge(tmp_path, "--budget", "20", "--payment-method", "pm_x", "--spt", "spt_x")
    )

    assert neither.exit_code == 2 and "exactly one" in neither.stderr
    assert both.exit_code == 2


def test_charge_refuses_a_float_budget_in_one_line(tmp_path: Path) -> None:
    result = runner.invoke(
        agent_app, _charge(tmp_path, "--budget", "1e3", "--payment-method", "pm_card_visa")
    )

    assert result.exit_code == 2
    assert result.stderr.count("\n") == 1 and "--budget" in result.stderr


def test_an_unreachable_station_is_a_one_line_failure(tmp_path: Path) -> None:
    result = runner.invoke(
        agent_app,
        _charge(tmp_path, "--budget", "20", "--payment-method", "pm_card_visa", "--timeout", "2"),
    )

    assert result.exit_code == 1
    assert "no deal" in result.stderr and "station_unavailable" in result.stderr
