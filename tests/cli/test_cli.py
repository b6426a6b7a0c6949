"""The `chargepay` command: configuration errors are one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def _chargepay(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "station", *args],
        env={"PATH": "/usr/bin:/bin", **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_bad_setting_stops_with_one_line_naming_the_field(tmp_path: Path) -> None:
    result = _chargepay("serve", env={"CHARGEPAY_HTTP_PORT": "eighty"}, cwd=tmp_path)

    assert result.returncode == 2
    assert "CHARGEPAY_HTTP_PORT" in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_db_upgrade_creates_the_schema_in_the_default_sqlite_file(tmp_path: Path) -> None:
    result = _chargepay("db", "upgrade", env={"CHARGEPAY_LOG_LEVEL": "WARNING"}, cwd=tmp_path)

    assert result.returncode == 0, result.stderr
    assert (tmp_path / "chargepay.db").exists()


def test_chargepoints_add_then_list_shows_the_registered_charge_point(tmp_path: Path) -> None:
    env = {"CHARGEPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'cp.db'}"}

    added = _chargepay("chargepoints", "add", "CP-7", "--password", "x" * 20, env=env, cwd=tmp_path)
    listed = _chargepay("chargepoints", "list", "--json", env=env, cwd=tmp_path)

    assert added.returncode == 0, added.stderr
    assert listed.returncode == 0, listed.stderr
    assert '"charge_point_id": "CP-7"' in listed.stdout
    assert '"connected": false' in listed.stdout


def test_chargepoints_add_refuses_a_short_password_in_one_line(tmp_path: Path) -> None:
    env = {"CHARGEPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'cp.db'}"}

    result = _chargepay("chargepoints", "add", "CP-7", "--password", "short", env=env, cwd=tmp_path)

    assert result.returncode == 2
    assert "16–40" in result.stderr
    assert "Traceback" not in result.stderr
