"""Every command and code block of the README runs, as written, in a test.

The README is cut into its `##` sections; the ```sh and ```python blocks of
each section run in order as one bash script (a python block through
``python3 - <<'PY'``), so a later block sees what an earlier one exported.
Each section runs in a fresh folder with its own HOME, and whatever it left
running in the background is stopped when it ends. Blocks marked ```text
are pictures, not commands; no other kind of block is allowed, and every
inline `` `chargepay …` `` in the prose must be a command some block runs.

Only these rewrites are made, each required to match (so a README change
that drops one fails here rather than silently running something else):

* installing into `.venv` is skipped and `.venv/bin/` dropped: the suite runs
  inside the environment the quick start makes;
* the quick start's `pytest` only collects the suite (it cannot run itself);
* the station's ports 8080 / 9000 become free ports (other tests run beside);
* the production block's `sk_test_51Hx…` (your own key) becomes the Stripe
  sandbox's key, with `CHARGEPAY_STRIPE_API_BASE`; its foreground `chargepay
  serve` runs in the background until `/healthz` answers;
* the benchmarks run at the smoke size of tests/test_benchmarks.py, and
  `python -m benchmarks` (the two in a row) is not run again.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simulators.ports import free_port
from simulators.stripe_sandbox import SANDBOX_API_KEY

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


@dataclass
class Section:
    title: str
    blocks: list[tuple[str, str]] = field(default_factory=list)

    @property
    def runnable(self) -> list[tuple[str, str]]:
        return [(kind, code) for kind, code in self.blocks if kind in ("sh", "python")]


def sections() -> list[Section]:
    found: list[Section] = []
    for part in re.split(r"^## ", README.read_text(encoding="utf-8"), flags=re.M)[1:]:
        title = part.splitlines()[0].strip()
        found.append(Section(title, [(k, c) for k, c in BLOCK.findall(part)]))
    return found


def _sub(
    pattern: str, replacement: str | Callable[[re.Match[str]], str], text: str, *, count: int = 0
) -> str:
    new, n = re.subn(pattern, replacement, text, count=count, flags=re.M)
    assert n, f"the README no longer has {pattern!r}: update tests/docs/test_readme.py"
    return new


# The benchmarks' commands are checked, not run: each shows its --help, and every flag
# the README names beside it is one it takes. Each one runs at a tiny size in
# tests/test_benchmarks.py (and the hostile campaign in tests/test_hostile.py).
BENCHMARK_LINE = r"^python -m (benchmarks\.\w+)[ \t]*(?:#(.*))?$"


def _benchmark_checked(match: re.Match[str]) -> str:
    module, comment = match.group(1), match.group(2) or ""
    help_file = f'"$HOME/{module}.help"'
    checks = [f"python -m {module} --help > {help_file}"]
    for flag in sorted(set(re.findall(r"--[a-z][a-z-]*", comment))):
        checks.append(f"grep -q -e '{flag}\\b' {help_file}")
    return "\n".join(checks)


def script_of(section: Section, http_port: int, ocpp_port: int) -> str:
    parts = []
    for kind, code in section.runnable:
        if kind == "python":
            parts.append(f"python3 - <<'PY'\n{code}PY\n")
        else:
            parts.append(code)
    text = "\n".join(parts)
    if section.title == "Quick start":
        text = _sub(r"python3 -m venv \.venv && \.venv/bin/pip install [^&]+&& ", "", text)
        text = _sub(r"\.venv/bin/pytest$", "pytest --collect-only -q", text)
        text = text.replace(".venv/bin/", "")
    if section.title == "Running the station":
        text = _sub(r"sk_test_51Hx…", SANDBOX_API_KEY, text)
        text = _sub(
            r"^chargepay serve(\s+#.*)?$",
            f"chargepay serve &\nuntil curl -sf http://127.0.0.1:{http_port}/healthz >/dev/null;"
            " do sleep 0.5; done",
            text,
        )
    if section.title == "Benchmarks":
        text = _sub(r"^python -m benchmarks(\s+#.*)?$", "", text)
        text = _sub(BENCHMARK_LINE, _benchmark_checked, text)
    text = text.replace("127.0.0.1:8080", f"127.0.0.1:{http_port}")
    return "set -euo pipefail\n" + text + "\n"


def test_every_block_is_a_command_or_a_picture() -> None:
    kinds = {kind for s in sections() for kind, _ in s.blocks}
    inline = re.findall(r"(?<!`)`(chargepay [^`]+)`", README.read_text(encoding="utf-8"))
    every_command = "\n".join(code for s in sections() for _, code in s.runnable)
    words = {" ".join(c.split()[:2]) for c in inline}

    assert kinds <= {"sh", "python", "text"}, kinds
    assert [w for w in sorted(words) if w not in every_command] == []


RUN = [s.title for s in sections() if s.runnable]


@pytest.mark.timeout(900)  # the demo, a station and the benchmarks' smoke runs take minutes
@pytest.mark.parametrize("title", RUN)
def test_the_readme_section_runs(title: str, tmp_path: Path, stripe_url: str) -> None:
    (section,) = [s for s in sections() if s.title == title]
    http_port, ocpp_port = free_port(), free_port()
    script = script_of(section, http_port, ocpp_port)
    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bin_dir}:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "CHARGEPAY_HTTP_PORT": str(http_port),
        "CHARGEPAY_OCPP_PORT": str(ocpp_port),
        "CHARGEPAY_STRIPE_API_BASE": stripe_url,
        "CHARGEPAY_LOG_LEVEL": "WARNING",
        **{k: v for k, v in os.environ.items() if k in ("CI", "CHARGEPAY_TEST_PG_DSN")},
    }
    # The quick start and the benchmarks run from a checkout; the rest anywhere.
    cwd = ROOT if title in ("Quick start", "Benchmarks") else tmp_path
    (tmp_path / "readme.sh").write_text(script)
    log = tmp_path / "readme.log"
    with log.open("w") as sink:
        process = subprocess.Popen(
            ["bash", str(tmp_path / "readme.sh")],
            cwd=cwd,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            process.wait(timeout=600)
        finally:
            # What the section left in the background (a station, a charge point) stops here.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
    out = log.read_text(errors="replace")
    assert process.returncode == 0, f"{script}\n----\n{out[-5000:]}"
    if title.startswith("A station and a car"):
        assert "settled accepted" in out, out[-3000:]
