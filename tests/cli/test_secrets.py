"""`serve` refuses to start without real secrets; `serve --sandbox` generates them."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

import pytest
from pydantic import SecretStr

from station.settings import Settings
from station.startup import StartupError, check_secrets, estimated_entropy_bits
from tests.cli.test_errors import STRONG, assert_one_line, chargepay

GOOD = {
    "admin_token": secrets.token_urlsafe(32),
    "secret_key": secrets.token_urlsafe(32),
    "stripe_api_key": "sk_test_" + secrets.token_hex(12),
}


def _settings(**secrets_: str | None) -> Settings:
    values = {**GOOD, **secrets_}
    return Settings(**{k: SecretStr(v) if v is not None else None for k, v in values.items()})


@pytest.mark.parametrize(
    ("name", "value", "says"),
    [
        ("admin_token", None, "CHARGEPAY_ADMIN_TOKEN is not set"),
        ("admin_token", "", "CHARGEPAY_ADMIN_TOKEN is not set"),
        ("admin_token", "a", "fewer than 24"),
        ("admin_token", "z" * 40, "not random enough"),
        ("admin_token", "passwordpasswordpassword", "not random enough"),
        ("admin_token", "…", "placeholder"),
        ("secret_key", None, "CHARGEPAY_SECRET_KEY is not set"),
        ("secret_key", "k", "fewer than 32"),
        ("secret_key", secrets.token_urlsafe(18), "fewer than 32"),
        ("secret_key", "<your secret key here, 32 characters>", "placeholder"),
        ("stripe_api_key", None, "CHARGEPAY_STRIPE_API_KEY is not set"),
        ("stripe_api_key", "sk_test_…", "placeholder"),  # the README's literal
        ("stripe_api_key", "sk_test_ünïcode_ключ", "not printable ASCII"),
        ("stripe_api_key", "pk_test_" + "a1b2c3d4e5f6", "does not start with sk_test_"),
    ],
)
def test_a_missing_short_or_placeholder_secret_is_refused(
    name: str, value: str | None, says: str
) -> None:
    with pytest.raises(StartupError) as refused:
        check_secrets(_settings(**{name: value}))

    assert says in str(refused.value)
    assert len(str(refused.value).splitlines()) == 1
    if value:
        assert f"={value}" not in str(refused.value)  # a secret is never echoed


@pytest.mark.parametrize(
    "generate",
    [
        lambda: secrets.token_urlsafe(32),
        lambda: secrets.token_hex(16),  # 128 bits as 32 hex digits (openssl rand -hex 16)
        lambda: secrets.token_hex(32),
    ],
)
def test_generated_secrets_pass(generate: Callable[[], str]) -> None:
    for _ in range(50):
        value = generate()
        check_secrets(_settings(admin_token=value, secret_key=value))


def test_the_entropy_estimate_orders_random_above_repetitive() -> None:
    assert estimated_entropy_bits("a" * 64) == 0
    assert estimated_entropy_bits("abab" * 8) == 32
    assert estimated_entropy_bits(secrets.token_urlsafe(32)) > 150


def test_serve_refuses_the_readme_placeholders_in_one_line(tmp_path: Path) -> None:
    env = {
        "CHARGEPAY_ADMIN_TOKEN": "…",
        "CHARGEPAY_SECRET_KEY": "…",
        "CHARGEPAY_STRIPE_API_KEY": "sk_test_…",
    }

    result = chargepay("serve", env=env, cwd=tmp_path)

    assert_one_line(result, "CHARGEPAY_ADMIN_TOKEN", "placeholder")
    assert not (tmp_path / "chargepay.db").exists()


def test_serve_refuses_a_one_character_secret_key(tmp_path: Path) -> None:
    result = chargepay("serve", env={**STRONG, "CHARGEPAY_SECRET_KEY": "a"}, cwd=tmp_path)

    assert_one_line(result, "CHARGEPAY_SECRET_KEY", "fewer than 32")


def test_serve_refuses_to_start_without_a_stripe_key(tmp_path: Path) -> None:
    env = {k: v for k, v in STRONG.items() if k != "CHARGEPAY_STRIPE_API_KEY"}

    result = chargepay("serve", env=env, cwd=tmp_path)

    assert_one_line(result, "CHARGEPAY_STRIPE_API_KEY is not set", "--sandbox")


def test_serve_sandbox_starts_localstripe_with_generated_secrets_and_says_so(
    tmp_path: Path,
) -> None:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "CHARGEPAY_HTTP_PORT": "0",
        "CHARGEPAY_OCPP_PORT": "0",
    }
    process = subprocess.Popen(
        [sys.executable, "-m", "station", "serve", "--sandbox"],
        env=env,
        cwd=tmp_path,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        deadline = time.monotonic() + 90
        http_port = None
        while http_port is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            lines.append(line)
            if line.startswith("{") and json.loads(line)["event"] == "station.ready":
                http_port = json.loads(line)["http_port"]
        assert http_port is not None, "".join(lines)[-3000:]
        sandbox = [line for line in lines if line.startswith("sandbox:")]
        assert len(sandbox) == 1, lines
        assert "localstripe" in sandbox[0] and "generated CHARGEPAY_ADMIN_TOKEN=" in sandbox[0]
        token = sandbox[0].split("CHARGEPAY_ADMIN_TOKEN=", 1)[1].split(";", 1)[0]
        check_secrets(_settings(admin_token=token))  # generated, so strong
        request = urllib.request.Request(
            f"http://127.0.0.1:{http_port}/v1/admin/charge-points",
            headers={"Authorization": f"Bearer {token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
