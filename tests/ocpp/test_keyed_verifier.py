"""The keyed password verifier: a restarted station admits charge points without scrypt.

A random-enough password gets, on its first successful scrypt check, a keyed
HMAC beside its scrypt hash (`KeyedVerifier`, key derived from the secret key,
never stored). After a restart the row's verifier admits it; a wrong password
is still refused, after the same scrypt work; a rotated key skips the old
verifiers (scrypt decides and writes new ones); a weak password or a station
without a secret key keeps scrypt only.
"""

from __future__ import annotations

import asyncio
import re
import secrets
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from station.app import Station, running_station
from station.ocpp.auth import KeyedVerifier, random_enough
from station.store.charging import credentials_of, register_charge_points
from station.store.db import Database
from tests.ocpp.conftest import basic, settings_for

METRICS_TOKEN = "metrics-token-" + "Zq7xW2pL9vK4mN8rT3yB"
STRONG = "Vb7-Qk2_Lm9xRt4-Wz8pNc3J"  # 24 characters, as secrets.token_urlsafe(18) makes
WEAK = "correct-horse-battery-1"  # 16-40 characters, but words
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _settings(database_url: str, secret_key: str | None, **overrides: Any) -> Any:
    return settings_for(
        database_url, secret_key=secret_key, metrics_token=METRICS_TOKEN, **overrides
    )


async def _status(station: Station, cp_id: str, password: str) -> int:
    url = f"ws://127.0.0.1:{station.ocpp_port}/ocpp/{cp_id}"
    try:
        async with connect(
            url,
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers=basic(cp_id, password),
            open_timeout=10,
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def _metric(station: Station, name: str, **labels: str) -> float:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{station.http_port}") as client:
        headers = {"Authorization": f"Bearer {METRICS_TOKEN}"}
        text = (await client.get("/metrics", headers=headers)).text
    inner = ",".join(f'{k}="{v}"' for k, v in labels.items())
    match = re.search(rf"^{name}{{{re.escape(inner)}}} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def _verifier(database_url: str, cp_id: str, *, wait_s: float = 5.0) -> str | None:
    """The row's verifier, waiting for the station's background write."""
    db = Database(database_url)
    try:
        for _ in range(int(wait_s / 0.05)):
            credentials = await credentials_of(db, cp_id)
            assert credentials is not None
            if credentials.password_verifier is not None:
                return credentials.password_verifier
            await asyncio.sleep(0.05)
        return None
    finally:
        await db.dispose()


async def _register(database_url: str, *pairs: tuple[str, str], replace: bool = False) -> None:
    db = Database(database_url)
    try:
        await db.upgrade()
        await register_charge_points(db, list(pairs), replace=replace)
    finally:
        await db.dispose()


def test_generated_passwords_are_random_enough_and_words_and_patterns_are_not() -> None:
    generated = [secrets.token_urlsafe(18) for _ in range(200)]

    assert sum(map(random_enough, generated)) >= 150  # about nine in ten
    assert random_enough(STRONG)
    for weak in (
        WEAK,
        "Correct-Horse-Battery-9x",
        "abcdefghijklmnopqrstuvwxyz",
        "Tr0ub4dor&3Tr0ub4dor&3",
        "aB3$aB3$aB3$aB3$aB3$aB3$",
        "0123456789012345",
    ):
        assert not random_enough(weak), weak


def test_a_verifier_matches_its_password_its_hash_and_its_id_only() -> None:
    keyed = KeyedVerifier("a-station-secret-key-0123456789abcdef")
    verifier = keyed.make("scrypt$hash-1", "CP-1", STRONG)

    assert keyed.current(verifier)
    assert keyed.matches(verifier, "scrypt$hash-1", "CP-1", STRONG)
    assert not keyed.matches(verifier, "scrypt$hash-1", "CP-1", STRONG + "x")
    assert not keyed.matches(verifier, "scrypt$hash-2", "CP-1", STRONG)  # a new password
    assert not keyed.matches(verifier, "scrypt$hash-1", "CP-2", STRONG)  # another row
    assert not keyed.matches(verifier[:-4] + "!!!!", "scrypt$hash-1", "CP-1", STRONG)
    assert STRONG not in verifier


def test_another_key_neither_trusts_nor_matches_the_old_verifiers() -> None:
    old = KeyedVerifier("a-station-secret-key-0123456789abcdef")
    new = KeyedVerifier("another-secret-key-0123456789abcdefgh")
    verifier = old.make("scrypt$hash-1", "CP-1", STRONG)

    assert old.key_id != new.key_id
    assert not new.current(verifier)
    assert not new.matches(verifier, "scrypt$hash-1", "CP-1", STRONG)


@sqlite_only
async def test_a_restarted_station_admits_by_the_keyed_verifier_and_refuses_wrong_ones(
    database_url: str,
) -> None:
    await _register(database_url, ("CP-K", STRONG))
    key = secrets.token_urlsafe(32)

    async with running_station(_settings(database_url, key)) as first:
        assert await _status(first, "CP-K", STRONG) == 101
        by_scrypt = await _metric(first, "chargepay_ocpp_logins_total", check="scrypt")
        verifier = await _verifier(database_url, "CP-K")

    async with running_station(_settings(database_url, key)) as restarted:
        right = await _status(restarted, "CP-K", STRONG)
        wrong = await _status(restarted, "CP-K", STRONG[:-1] + "Q")
        keyed = await _metric(restarted, "chargepay_ocpp_logins_total", check="keyed")
        scrypt = await _metric(restarted, "chargepay_ocpp_logins_total", check="scrypt")
        refused = await _metric(
            restarted, "chargepay_ocpp_login_refusals_total", reason="unauthorized"
        )

    assert by_scrypt == 1
    assert verifier is not None and verifier.startswith("hmac-sha256$")
    assert STRONG not in verifier
    assert (right, wrong) == (101, 401)
    assert (keyed, scrypt, refused) == (1, 0, 1)


@sqlite_only
async def test_a_rotated_key_falls_back_to_scrypt_and_rewrites_the_verifier(
    database_url: str,
) -> None:
    await _register(database_url, ("CP-K", STRONG))
    async with running_station(_settings(database_url, secrets.token_urlsafe(32))) as first:
        assert await _status(first, "CP-K", STRONG) == 101
        old = await _verifier(database_url, "CP-K")

    async with running_station(_settings(database_url, secrets.token_urlsafe(32))) as rotated:
        right = await _status(rotated, "CP-K", STRONG)
        wrong = await _status(rotated, "CP-K", STRONG[:-1] + "Q")
        scrypt = await _metric(rotated, "chargepay_ocpp_logins_total", check="scrypt")
        keyed = await _metric(rotated, "chargepay_ocpp_logins_total", check="keyed")
        for _ in range(100):
            new = await _verifier(database_url, "CP-K")
            if new != old:
                break
            await asyncio.sleep(0.05)

    assert (right, wrong) == (101, 401)
    assert (scrypt, keyed) == (1, 0)
    assert old is not None and new is not None and new != old
    assert new.split("$")[1] != old.split("$")[1]  # the new key's id


@sqlite_only
async def test_weak_passwords_and_a_station_without_a_key_keep_scrypt_only(
    database_url: str,
) -> None:
    await _register(database_url, ("CP-W", WEAK), ("CP-N", STRONG))
    async with running_station(_settings(database_url, secrets.token_urlsafe(32))) as keyed:
        assert await _status(keyed, "CP-W", WEAK) == 101
    async with running_station(_settings(database_url, None)) as keyless:
        assert await _status(keyless, "CP-N", STRONG) == 101

    assert await _verifier(database_url, "CP-W", wait_s=0.5) is None
    assert await _verifier(database_url, "CP-N", wait_s=0.5) is None


@sqlite_only
async def test_a_new_password_drops_the_old_verifier(database_url: str) -> None:
    await _register(database_url, ("CP-K", STRONG))
    key = secrets.token_urlsafe(32)
    async with running_station(_settings(database_url, key)) as first:
        assert await _status(first, "CP-K", STRONG) == 101
        assert await _verifier(database_url, "CP-K") is not None
    renewed = "Hx4_Pq8-Ds2mYt6-Kf9wJr3L"
    await _register(database_url, ("CP-K", renewed), replace=True)

    async with running_station(_settings(database_url, key)) as restarted:
        old = await _status(restarted, "CP-K", STRONG)
        new = await _status(restarted, "CP-K", renewed)

    assert (old, new) == (401, 101)


@sqlite_only
async def test_a_keyed_verifier_admits_past_the_failed_login_ceiling(database_url: str) -> None:
    """A reconnect storm behind one address never locks out the right credentials."""
    await _register(database_url, ("CP-K", STRONG), ("CP-S", WEAK))
    key = secrets.token_urlsafe(32)
    async with running_station(_settings(database_url, key)) as first:
        assert await _status(first, "CP-K", STRONG) == 101
        assert await _verifier(database_url, "CP-K") is not None

    ceiling = _settings(database_url, key, ocpp_auth_failures_per_address_per_minute=2)
    async with running_station(ceiling) as restarted:
        failures = [await _status(restarted, f"CP-X{n}", STRONG) for n in range(2)]
        keyed = await _status(restarted, "CP-K", STRONG)
        needs_scrypt = await _status(restarted, "CP-S", WEAK)
        throttled = await _metric(
            restarted, "chargepay_ocpp_login_refusals_total", reason="throttled"
        )

    assert failures == [401, 401]
    assert keyed == 101  # never verified by this process, over the ceiling: still in
    assert needs_scrypt == 429
    assert throttled == 1
