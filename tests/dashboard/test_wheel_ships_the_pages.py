"""The built wheel carries the dashboard's page and assets, so an installed station serves them."""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "station" / "api" / "dashboard_static"


@pytest.mark.timeout(300)
def test_the_wheel_ships_every_dashboard_file(tmp_path: Path) -> None:
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    for package in ("station", "simulators"):
        shutil.copytree(
            ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__")
        )

    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", str(source), "-w", str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=280,
    )

    (wheel,) = tmp_path.glob("chargepay-*.whl")
    shipped = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"station/api/dashboard_static/{p.name}" for p in STATIC.iterdir()}
    assert expected and expected <= shipped
    assert {"station/api/dashboard.py", "station/api/docs.py"} <= shipped
