"""`chargepay agents …` and `chargepay audit …` against a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from station.cli import app as cli


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "station.db"
    monkeypatch.setenv("CHARGEPAY_DATABASE_URL", f"sqlite:///{path}")
    monkeypatch.chdir(tmp_path)
    return path


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_an_agent_is_added_listed_suspended_and_resumed(env: Path, tmp_path: Path) -> None:
    code, public_key, _ = run("keygen", "--out", str(tmp_path / "agent.pem"))
    assert code == 0
    code, agent_id, err = run(
        "agents", "add", "--name", "car-7", "--public-key", public_key.strip(),
        "--limit-per-session", "50", "--limit-per-window", "200", "--allow", "CP-1",
    )  # fmt: skip
    assert code == 0, err
    agent_id = agent_id.strip()

    assert run("agents", "suspend", agent_id, "--reason", "lost key")[0] == 0
    _, listed, _ = run("agents", "list", "--json")
    assert json.loads(listed)[0]["status"] == "suspended"
    assert run("agents", "resume", agent_id)[0] == 0
    _, listed, _ = run("agents", "list", "--status", "active", "--json")
    [line] = json.loads(listed)
    assert line["agent_id"] == agent_id
    assert line["limit_per_session"] == "50.00"
    assert line["allowed_charge_points"] == ["CP-1"]
    assert (tmp_path / "agent.pem").stat().st_mode & 0o777 == 0o600


def test_bad_input_is_one_line_and_exit_2(env: Path) -> None:
    code, _, err = run(
        "agents", "add", "--name", "x", "--public-key", "not-a-key",
        "--limit-per-session", "1", "--limit-per-window", "1",
    )  # fmt: skip

    assert code == 2
    assert "public_key" in err
    assert run("agents", "suspend", "agt_nobody", "--reason", "x")[0] == 2


def test_audit_verify_names_the_broken_row(env: Path, tmp_path: Path) -> None:
    _, public_key, _ = run("keygen", "--out", str(tmp_path / "agent.pem"))
    for _ in range(3):
        run(
            "agents", "add", "--name", "car", "--public-key", public_key.strip(),
            "--limit-per-session", "1", "--limit-per-window", "1",
        )  # fmt: skip
    code, out, _ = run("audit", "verify")
    assert code == 0
    assert "3 rows" in out

    with sqlite3.connect(env) as conn:
        conn.execute("UPDATE audit_log SET actor = 'mallory' WHERE seq = 2")
    code, _, err = run("audit", "verify")

    assert code == 1
    assert "row 2" in err


def test_audit_export_writes_json_lines(env: Path, tmp_path: Path) -> None:
    _, public_key, _ = run("keygen", "--out", str(tmp_path / "agent.pem"))
    run(
        "agents", "add", "--name", "car", "--public-key", public_key.strip(),
        "--limit-per-session", "1", "--limit-per-window", "1",
    )  # fmt: skip

    code, _, _ = run("audit", "export", "--output", str(tmp_path / "audit.jsonl"))

    rows = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert code == 0
    assert [r["action"] for r in rows] == ["agent.registered"]
    assert rows[0]["actor"] == "cli"


def test_agents_list_refuses_an_unknown_status_in_one_line(env: Path) -> None:
    code, out, err = run("agents", "list", "--status", "bogus")

    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "'bogus'" in err and "active, suspended" in err


def test_agents_add_refuses_a_session_limit_above_the_window_limit(
    env: Path, tmp_path: Path
) -> None:
    _, public_key, _ = run("keygen", "--out", str(tmp_path / "agent.pem"))

    code, out, err = run(
        "agents", "add", "--name", "car", "--public-key", public_key.strip(),
        "--limit-per-session", "300", "--limit-per-window", "200",
    )  # fmt: skip

    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert "limit_per_session (300) is above limit_per_window (200)" in err


def test_agents_list_prints_a_table_without_json(env: Path, tmp_path: Path) -> None:
    _, public_key, _ = run("keygen", "--out", str(tmp_path / "agent.pem"))
    run(
        "agents", "add", "--name", "car-9", "--public-key", public_key.strip(),
        "--limit-per-session", "5", "--limit-per-window", "20",
    )  # fmt: skip

    code, out, _ = run("agents", "list")

    assert code == 0
    assert "car-9" in out and "agent id" in out
    assert not out.lstrip().startswith(("{", "["))
