"""The agent installs on its own: a fresh virtual environment, `pip install` of the
`chargepay-agent` distribution from this repository, nothing of the station with it,
and the agent's own tests passing there."""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Distributions an agent must never pull in (the station and its heavy libraries).
FORBIDDEN = {"chargepay", "ocpp", "fastapi", "sqlalchemy", "stripe", "localstripe", "alembic"}


def _run(args: list[str | Path], cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def _readme_example() -> str:
    """The README's Python example (the car's side)."""
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return next(b for b in blocks if "VehicleAgent" in b)


def test_the_readme_example_imports_only_the_agent_and_the_standard_library() -> None:
    tree = ast.parse(_readme_example())
    roots = {
        (node.module if isinstance(node, ast.ImportFrom) else alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    assert roots - set(sys.stdlib_module_names) == {"vehicle"}


@pytest.mark.timeout(900)
def test_the_agent_installs_alone_and_its_tests_pass_there(tmp_path: Path) -> None:
    # Built from a copy, so the build leaves nothing in the checkout.
    source = tmp_path / "agent"
    shutil.copytree(
        ROOT / "agent", source, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    )
    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", venv], tmp_path, 120).returncode == 0
    python = venv / "bin" / "python"

    installed = _run([python, "-m", "pip", "install", "-q", f"{source}[cli,test]"], tmp_path, 600)
    assert installed.returncode == 0, installed.stdout + installed.stderr

    listing = _run([python, "-m", "pip", "list", "--format", "json"], tmp_path, 60)
    names = {d["name"].lower().replace("_", "-") for d in json.loads(listing.stdout)}
    assert "chargepay-agent" in names
    assert not names & FORBIDDEN, names & FORBIDDEN
    where = _run(
        [python, "-c", "import importlib.util as u, vehicle; "
         "print(vehicle.__file__); print(u.find_spec('station'))"],
        tmp_path, 60,
    )  # fmt: skip
    vehicle_file, station_spec = where.stdout.split()
    assert vehicle_file.startswith(str(venv)), vehicle_file  # the installed copy, not the source
    assert station_spec == "None"
    # The README's example resolves its imports with the agent alone installed.
    imports = "\n".join(
        line for line in _readme_example().splitlines() if line.startswith(("from ", "import "))
    )
    readme = _run([python, "-c", imports], tmp_path, 60)
    assert readme.returncode == 0, readme.stderr

    tests = _run([venv / "bin" / "pytest", "-q", "-p", "no:cacheprovider", source / "tests"],
                 tmp_path, 600)  # fmt: skip
    assert tests.returncode == 0, tests.stdout[-4000:] + tests.stderr[-2000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout
