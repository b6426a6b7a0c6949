"""Every bad setting, file, port or argument: one line on stderr naming it, exit status 2.

Each case of issue 12 runs the real command in a subprocess; every field of
`Settings` is refused through the real command in-process (typer's runner),
which is the same code path without paying a Python start-up per field.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from typer.testing import CliRunner

from station.cli import app
from station.settings import Settings
from station.startup import expected

STRONG = {
    "CHARGEPAY_ADMIN_TOKEN": secrets.token_urlsafe(32),
    "CHARGEPAY_SECRET_KEY": secrets.token_urlsafe(32),
    "CHARGEPAY_STRIPE_API_KEY": "sk_test_" + secrets.token_hex(12),
    "CHARGEPAY_HTTP_PORT": "0",
    "CHARGEPAY_OCPP_PORT": "0",
}


def chargepay(*args: str, env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "station", *args],
        env={"PATH": "/usr/bin:/bin", "HOME": str(cwd), **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
    )


def assert_one_line(result: subprocess.CompletedProcess[str], *words: str) -> str:
    line = result.stderr.strip()
    assert result.returncode == 2, (result.returncode, result.stderr[-3000:])
    assert len(line.splitlines()) == 1, result.stderr[-3000:]
    assert line.startswith("error: ")
    for word in words:
        assert word in line, line
    return line


@pytest.fixture
def held_port() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_an_unknown_database_url(tmp_path: Path) -> None:
    result = chargepay("db", "upgrade", env={"CHARGEPAY_DATABASE_URL": "foo://bar"}, cwd=tmp_path)

    assert_one_line(result, "CHARGEPAY_DATABASE_URL", "'foo'", "postgresql://")


def test_an_unwritable_sqlite_path(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'folder' / 'x.db'}"

    result = chargepay("db", "upgrade", env={"CHARGEPAY_DATABASE_URL": url}, cwd=tmp_path)

    assert_one_line(result, "SQLite", "missing/folder/x.db", "writable")


def test_a_read_only_sqlite_folder(tmp_path: Path) -> None:
    if os.geteuid() == 0:
        pytest.skip("root writes anywhere")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    url = f"sqlite:///{locked / 'x.db'}"

    result = chargepay("db", "upgrade", env={"CHARGEPAY_DATABASE_URL": url}, cwd=tmp_path)

    assert_one_line(result, "SQLite", "writable")


def test_an_unreachable_postgresql(tmp_path: Path) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"postgresql://chargepay@127.0.0.1:{port}/chargepay"

    result = chargepay("db", "upgrade", env={"CHARGEPAY_DATABASE_URL": url}, cwd=tmp_path)

    assert_one_line(result, "PostgreSQL", f"127.0.0.1:{port}", "CHARGEPAY_DATABASE_URL")


@pytest.mark.parametrize("which", ["HTTP", "OCPP"])
def test_a_port_in_use(which: str, tmp_path: Path, held_port: int) -> None:
    env = {**STRONG, f"CHARGEPAY_{which}_PORT": str(held_port)}

    result = chargepay("serve", env=env, cwd=tmp_path)

    assert_one_line(result, f"{which} port", str(held_port), f"CHARGEPAY_{which}_PORT")


def test_a_port_in_use_given_on_the_command_line(tmp_path: Path, held_port: int) -> None:
    result = chargepay("serve", "--http-port", str(held_port), env=STRONG, cwd=tmp_path)

    assert_one_line(result, "HTTP port", str(held_port))


def test_a_bad_log_level(tmp_path: Path) -> None:
    result = chargepay("db", "upgrade", env={"CHARGEPAY_LOG_LEVEL": "LOUD"}, cwd=tmp_path)

    assert_one_line(result, "CHARGEPAY_LOG_LEVEL", "'LOUD'", "DEBUG, INFO")


def test_missing_tls_files(tmp_path: Path) -> None:
    env = {
        **STRONG,
        "CHARGEPAY_OCPP_TLS_CERT": str(tmp_path / "station.crt"),
        "CHARGEPAY_OCPP_TLS_KEY": str(tmp_path / "station.key"),
    }

    result = chargepay("serve", env=env, cwd=tmp_path)

    assert_one_line(result, "CHARGEPAY_OCPP_TLS_CERT", "station.crt", "PEM")


def test_tls_files_that_are_not_a_certificate_and_key(tmp_path: Path) -> None:
    (tmp_path / "station.crt").write_text("not a certificate\n")
    (tmp_path / "station.key").write_text("not a key\n")
    env = {
        **STRONG,
        "CHARGEPAY_OCPP_TLS_CERT": str(tmp_path / "station.crt"),
        "CHARGEPAY_OCPP_TLS_KEY": str(tmp_path / "station.key"),
    }

    result = chargepay("serve", env=env, cwd=tmp_path)

    assert_one_line(result, "TLS certificate", "CHARGEPAY_OCPP_TLS_KEY")


def test_a_certificate_without_its_key(tmp_path: Path) -> None:
    (tmp_path / "station.crt").write_text("x\n")
    env = {**STRONG, "CHARGEPAY_OCPP_TLS_CERT": str(tmp_path / "station.crt")}

    result = chargepay("serve", env=env, cwd=tmp_path)

    assert_one_line(result, "CHARGEPAY_OCPP_TLS_KEY")


def test_an_upper_case_currency_keeps_the_class_in_its_message(tmp_path: Path) -> None:
    env = {"CHARGEPAY_DEFAULT_CURRENCY": "USD"}

    result = chargepay("db", "upgrade", env=env, cwd=tmp_path)

    line = assert_one_line(result, "CHARGEPAY_DEFAULT_CURRENCY", "'USD'", "lower case", "usd")
    assert "^{3}$" not in line  # the pattern's [a-z] was once eaten as markup


def test_audit_export_into_a_missing_folder(tmp_path: Path) -> None:
    env = {"CHARGEPAY_DATABASE_URL": f"sqlite:///{tmp_path / 'a.db'}"}

    result = chargepay("audit", "export", "-o", "/nonexistent/dir/x.jsonl", env=env, cwd=tmp_path)

    assert_one_line(result, "/nonexistent/dir/x.jsonl", "--output")


@pytest.mark.parametrize("url", ["not-a-url", "http://h:port"])
def test_agent_charge_with_a_station_that_is_not_a_url(url: str, tmp_path: Path) -> None:
    from vehicle.signing import generate_keypair, save_private_key

    key = tmp_path / "agent.pem"
    save_private_key(generate_keypair()[0], key)

    result = chargepay(
        "agent", "charge", "--station", url, "--charge-point", "CP-1", "--energy", "5",
        "--budget", "10", "--agent-id", "agt_x", "--key", str(key),
        "--payment-method", "pm_card_visa", "--limit-session", "20", "--limit-day", "50",
        "--spend-record", str(tmp_path / "spend.json"), env={}, cwd=tmp_path,
    )  # fmt: skip

    assert_one_line(result, "--station", repr(url))


def test_a_host_that_is_not_an_address_of_this_machine(tmp_path: Path) -> None:
    env = {**STRONG, "CHARGEPAY_HTTP_HOST": "192.0.2.1", "CHARGEPAY_HTTP_PORT": "18080"}

    result = chargepay("serve", env=env, cwd=tmp_path)

    assert_one_line(result, "192.0.2.1", "CHARGEPAY_HTTP_HOST")


# --- every field of Settings --------------------------------------------------------

# A value each field refuses. Three kinds of field take any string and are
# checked where they are used: the hosts (by binding, above), the secrets (by
# `serve`, tests/cli/test_secrets.py) and `fault_inject` (a test hook).
BAD = {
    int: "eleven",
    float: "soon",
    bool: "perhaps",
}
BAD_BY_NAME = {
    "database_url": "mysql://db/x",
    "public_url": "pay.example.net",
    "node_id": "node one",
    "stripe_api_base": "localhost:8420",
    "ocpp_tls_cert": "/nonexistent/station.crt",
    "ocpp_tls_key": "/nonexistent/station.key",
    "ocpp_tls_ca": "/nonexistent/ca.pem",
    "default_currency": "dollars",
    "list_price_per_kwh": "cheap",
    "floor_price_per_kwh": "-1",
    "session_fee": "-0.50",
    "log_level": "LOUD",
    "log_format": "xml",
    "negotiation_max_rounds": "51",
    "mpp_network_id": "profile one",
    "mpp_payment_method_types": "card;link",
    "mpp_intents": "authorize,bitcoin",
    "trusted_proxies": "10.0.0.1,ten",
    "open_payer_limit_per_session": "-5",
    "open_payer_limit_per_method_per_day": "plenty",
}


def _bad_value(name: str) -> str | None:
    if name in BAD_BY_NAME:
        return BAD_BY_NAME[name]
    return BAD.get(Settings.model_fields[name].annotation)  # type: ignore[call-overload]


FIELDS = sorted(n for n in Settings.model_fields if _bad_value(n) is not None)


def test_the_fields_with_no_bad_value_are_free_text() -> None:
    free = set(Settings.model_fields) - set(FIELDS)

    assert {
        name: Settings.model_fields[name].annotation
        for name in free
        if Settings.model_fields[name].annotation not in (str, str | None, SecretStr | None)
    } == {}


@pytest.mark.parametrize("name", FIELDS)
def test_every_field_refuses_a_bad_value_in_one_line(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    variable = f"CHARGEPAY_{name.upper()}"

    result = CliRunner().invoke(app, ["db", "upgrade"], env={variable: _bad_value(name)})

    line = result.stderr.strip()
    assert result.exit_code == 2, (result.exit_code, result.output)
    assert len(line.splitlines()) == 1, line
    assert variable in line
    assert expected(Settings.model_fields[name]) in line
    assert not (tmp_path / "chargepay.db").exists()  # refused before anything was written
