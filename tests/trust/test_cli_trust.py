"""`chargepay agents …` and `chargepay audit …` against a real SQLite file."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from station.cli_trust import agents_app, audit_app

cli = typer.Typer()
cli.add_typer(agents_app, name="agents")
cli.add_typer(audit_app, name="audit")


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
    code, public_key, _ = run("agents", "keygen", str(tmp_path / "agent.pem"))
    assert code == 0
    code, agent_id, err = run(
        "agents", "add", "--name", "car-7", "--public-key", public_key.strip(),
        "--limit-per-session", "50", "--limit-per-window", "200", "--allow", "CP-1",
    )  # fmt: skip
    assert code == 0, err
    agent_id = agent_id.strip()

    assert run("agents", "suspend", agent_id, "--reason", "lost key")[0] == 0
    _, listed, _ = run("agents", "list")
    assert json.loads(listed)["status"] == "suspended"
    assert run("agents", "resume", agent_id)[0] == 0
    _, listed, _ = run("agents", "list", "--status", "active")
    line = json.loads(listed)
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
    _, public_key, _ = run("agents", "keygen", str(tmp_path / "agent.pem"))
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
    _, public_key, _ = run("agents", "keygen", str(tmp_path / "agent.pem"))
    run(
        "agents", "add", "--name", "car", "--public-key", public_key.strip(),
        "--limit-per-session", "1", "--limit-per-window", "1",
    )  # fmt: skip

    code, _, _ = run("audit", "export", "--output", str(tmp_path / "audit.jsonl"))

    rows = [json.loads(x) for x in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert code == 0
    assert [r["action"] for r in rows] == ["agent.registered"]
    assert rows[0]["actor"] == "cli"
