"""Load balancers in front of the station (``CHARGEPAY_TRUSTED_PROXIES``).

Behind a balancer every peer is the balancer, so every per-address limit (the
operator API's wrong tokens, the OCPP failed logins, the in-flight budgets)
would count all clients as one. From a trusted balancer the client is the
rightmost ``X-Forwarded-For`` hop that is not a balancer; from anyone else
``X-Forwarded-For`` is not believed (uvicorn's own default believes it from
any local process).
"""

from __future__ import annotations

import ipaddress

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from station.app import running_station
from station.ocpp.auth import client_address
from station.settings import Settings
from tests.ocpp.test_security import basic
from tests.trust.conftest import base_url, station_settings

BALANCERS = (ipaddress.ip_network("10.0.0.0/24"), ipaddress.ip_network("fd00::/64"))


@pytest.mark.parametrize(
    ("peer", "forwarded", "client"),
    [
        ("10.0.0.5", "203.0.113.7", "203.0.113.7"),
        ("10.0.0.5", "198.51.100.1, 203.0.113.7", "203.0.113.7"),  # the left is the client's say
        ("10.0.0.5", "203.0.113.7, 10.0.0.9", "203.0.113.7"),  # two balancers in a row
        ("fd00::1", "2001:db8::1", "2001:db8::1"),
        ("192.0.2.1", "203.0.113.7", "192.0.2.1"),  # not a balancer: not believed
        ("10.0.0.5", "", "10.0.0.5"),
        ("10.0.0.5", "not-an-address", "10.0.0.5"),
        ("10.0.0.5", "10.0.0.6", "10.0.0.5"),  # only balancers: the peer
    ],
)
def test_the_client_behind_trusted_balancers(peer: str, forwarded: str, client: str) -> None:
    assert client_address(peer, forwarded, BALANCERS) == client
    assert client_address(peer, forwarded, ()) == peer


def test_a_bad_balancer_setting_is_refused() -> None:
    with pytest.raises(ValueError, match="'ten' is not an address or a network"):
        Settings(trusted_proxies="10.0.0.1, ten")
    assert Settings(trusted_proxies=" 10.0.0.1 , fd00::/64").trusted_proxies == "10.0.0.1,fd00::/64"


async def _wrong_tokens(settings: Settings) -> list[int]:
    """Two wrong tokens as client A, then one as client B, all through 127.0.0.1."""
    async with (
        running_station(settings) as station,
        httpx.AsyncClient(base_url=base_url(station)) as client,
    ):
        statuses = []
        for client_ip in ("203.0.113.1", "203.0.113.1", "203.0.113.2"):
            headers = {"Authorization": "Bearer wrong", "X-Forwarded-For": client_ip}
            statuses.append((await client.get("/v1/admin/agents", headers=headers)).status_code)
    return statuses


async def test_the_operator_api_counts_the_client_behind_a_trusted_balancer(
    database_url: str,
) -> None:
    limits = {"admin_auth_failures_per_minute": 1}
    trusted = station_settings(database_url, trusted_proxies="127.0.0.1", **limits)
    untrusted = station_settings(database_url, **limits)

    assert await _wrong_tokens(trusted) == [401, 429, 401]  # B is not A
    assert await _wrong_tokens(untrusted) == [401, 429, 429]  # everyone is 127.0.0.1


async def _wrong_logins(settings: Settings) -> list[int]:
    """Two failed OCPP logins as client A, then one as client B, all through 127.0.0.1."""
    statuses = []
    async with running_station(settings) as station:
        for n, client_ip in enumerate(("203.0.113.1", "203.0.113.1", "203.0.113.2")):
            headers = {
                **basic(f"CP-NONE-{n}", "wrong-password-123456"),
                "X-Forwarded-For": client_ip,
            }
            try:
                async with connect(
                    f"ws://127.0.0.1:{station.ocpp_port}/ocpp/CP-NONE-{n}",
                    subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                    additional_headers=headers,
                ):
                    statuses.append(101)
            except InvalidStatus as exc:
                statuses.append(exc.response.status_code)
    return statuses


async def test_ocpp_logins_count_the_client_behind_a_trusted_balancer(database_url: str) -> None:
    limits = {"ocpp_auth_failures_per_address_per_minute": 1, "ocpp_auth_free_failures": 9}
    trusted = station_settings(database_url, trusted_proxies="127.0.0.0/8", **limits)
    untrusted = station_settings(database_url, **limits)

    assert await _wrong_logins(trusted) == [401, 429, 401]
    assert await _wrong_logins(untrusted) == [401, 429, 429]
