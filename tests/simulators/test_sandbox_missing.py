"""localstripe is a demo and development extra: without it the sandbox and the demo say
so in one line, naming the extra to install."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from simulators import stripe_sandbox
from station.cli import app


def test_the_sandbox_without_localstripe_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe_sandbox, "sandbox_installed", lambda: False)

    with pytest.raises(stripe_sandbox.SandboxUnavailable, match=r"\.\[demo\]"):  # noqa: SIM117
        with stripe_sandbox.stripe_sandbox():
            pass


def test_the_demo_without_localstripe_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(stripe_sandbox, "sandbox_installed", lambda: False)

    result = CliRunner().invoke(app, ["demo"])

    assert result.exit_code == 2
    assert "pip install -e '.[demo]'" in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output
