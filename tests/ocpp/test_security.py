"""Only registered charge points with the right password (or certificate) get in."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import json
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulators.charge_point import SimulatedChargePoint
from station.app import Station, running_station
from station.errors import Conflict, ValidationError
from station.store.charging import (
    hash_password,
    password_hash_of,
    register_charge_point,
    verify_password,
)
from station.store.db import Database
from tests.ocpp.conftest import PASSWORD, basic, registered, settings_for

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def handshake_status(url: str, cp_id: str, password: str | None, **kw: object) -> int:
    headers = basic(cp_id, password) if password is not None else {}
    try:
        async with connect(
            f"{url}/{cp_id}",
            subprotocols=kw.pop("subprotocols", ["ocpp2.0.1"]),  # type: ignore[arg-type]
            additional_headers=headers,
            **kw,  # type: ignore[arg-type]
        ):
            return 101
    except InvalidStatus as exc:
        return exc.response.status_code


async def test_unregistered_and_unauthenticated_charge_points_get_401(ocpp_url: str) -> None:
    assert await handshake_status(ocpp_url, "CP-UNKNOWN", PASSWORD) == 401
    assert await handshake_status(ocpp_url, "CP-1", "wrong-password-123456") == 401
    assert await handshake_status(ocpp_url, "CP-1", None) == 401
    assert await handshake_status(ocpp_url, "CP-1", PASSWORD) == 101


async def test_the_newest_common_version_is_chosen(ocpp_url: str) -> None:
    async with connect(
        f"{ocpp_url}/CP-1",
        subprotocols=["ocpp1.6", "ocpp2.1", "ocpp2.0.1"],  # type: ignore[list-item]
        additional_headers=basic("CP-1", PASSWORD),
    ) as ws:
        assert ws.subprotocol == "ocpp2.1"


async def test_a_hijack_attempt_does_not_displace_the_connected_charge_point(
    station: Station, ocpp_url: str
) -> None:
    sim = SimulatedChargePoint(ocpp_url, "CP-1", PASSWORD, "ocpp2.0.1")

    async with sim:
        await asyncio.wait_for(sim.booted.wait(), 10)
        first = station.connections.get("CP-1")
        refused = await handshake_status(ocpp_url, "CP-1", "attacker-guess-0000")
        still = station.connections.get("CP-1")

    assert refused == 401
    assert still is first
    assert sim.connections == 1


async def test_a_reconnect_with_valid_credentials_replaces_the_old_connection(
    station: Station, ocpp_url: str
) -> None:
    def dial() -> connect:
        return connect(
            f"{ocpp_url}/CP-1",
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
            additional_headers=basic("CP-1", PASSWORD),
        )

    async with dial() as old, dial() as new:
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(old.recv(), 5)
        await new.send(json.dumps([2, "hb", "Heartbeat", {}]))
        reply = json.loads(await asyncio.wait_for(new.recv(), 5))

    assert reply[:2] == [3, "hb"]


async def test_passwords_are_stored_as_salted_hashes(db: Database) -> None:
    await register_charge_point(db, "CP-9", PASSWORD)

    stored = await password_hash_of(db, "CP-9")

    assert stored is not None and PASSWORD not in stored
    assert stored.startswith("scrypt$")
    assert verify_password(PASSWORD, stored)
    assert not verify_password(PASSWORD + "x", stored)
    assert hash_password(PASSWORD) != hash_password(PASSWORD)  # per-row salt


@pytest.mark.parametrize("password", ["short", "x" * 41])
async def test_registration_refuses_passwords_outside_16_to_40_characters(
    db: Database, password: str
) -> None:
    with pytest.raises(ValidationError):
        await register_charge_point(db, "CP-9", password)


async def test_registering_the_same_charge_point_twice_is_a_conflict(db: Database) -> None:
    await register_charge_point(db, "CP-9", PASSWORD)

    with pytest.raises(Conflict):
        await register_charge_point(db, "CP-9", PASSWORD)


def _self_signed(tmp: Path, name: str) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / f"{name}.crt", tmp / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


async def test_security_profiles_2_and_3_over_tls(database_url: str, tmp_path: Path) -> None:
    await registered(database_url)
    server_cert, server_key = _self_signed(tmp_path, "station")
    client_cert, client_key = _self_signed(tmp_path, "CP-2")
    settings = settings_for(
        database_url,
        ocpp_tls_cert=server_cert,
        ocpp_tls_key=server_key,
        ocpp_tls_ca=client_cert,
        ocpp_auth_failures_per_address_per_minute=3,
    )
    plain = ssl.create_default_context(cafile=server_cert)
    mutual = ssl.create_default_context(cafile=server_cert)
    mutual.load_cert_chain(client_cert, client_key)

    async with running_station(settings) as station:
        url = f"wss://127.0.0.1:{station.ocpp_port}/ocpp"
        profile_2 = await handshake_status(url, "CP-1", PASSWORD, ssl=plain)
        profile_2_wrong = await handshake_status(url, "CP-1", "wrong-password-123456", ssl=plain)
        profile_3 = await handshake_status(url, "CP-2", None, ssl=mutual)
        certificate_of_another_id = await handshake_status(url, "CP-1", None, ssl=mutual)
        guesses = [await handshake_status(url, "CP-2", f"guess-{n:0>16}", ssl=plain) for n in "123"]
        profile_3_past_the_ceiling = await handshake_status(url, "CP-2", None, ssl=mutual)

    assert (profile_2, profile_2_wrong) == (101, 401)
    assert (profile_3, certificate_of_another_id) == (101, 401)
    assert guesses == [401, 429, 429]
    assert profile_3_past_the_ceiling == 101
