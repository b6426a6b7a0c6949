"""Unregistered payers all act as one agent (CHARGEPAY_OPEN_PAYERS): its per-agent
ceilings are counted per client site, so one payer cannot take them from the rest.

Each client site (address; IPv6 by its /64) opens at most
``max_open_negotiations_per_agent`` negotiations a minute and probes its own share of
unknown charge points; ``open_payer_max_live_negotiations`` bounds them all together.
The sites here are loopback source addresses (127.0.0.2, …).
"""

from __future__ import annotations

import asyncio

import httpx

from tests.api.test_ceilings import _base, station_with

OPEN = {"open_payers": True, "max_open_negotiations_per_agent": 2}


def _from(station_url: str, address: str) -> httpx.AsyncClient:
    transport = httpx.AsyncHTTPTransport(local_address=address)
    return httpx.AsyncClient(base_url=station_url, transport=transport, timeout=10)


async def _open(client: httpx.AsyncClient, charge_point_id: str = "CP-1") -> int:
    body = {"charge_point_id": charge_point_id, "energy_kwh": "5"}
    return (await client.post("/v1/negotiations", json=body)).status_code


async def test_one_unregistered_payer_cannot_take_the_negotiations_of_the_others(
    database_url: str,
) -> None:
    async with (
        station_with(database_url, open_payer_max_live_negotiations=3, **OPEN) as station,
        _from(_base(station), "127.0.0.1") as greedy,
        _from(_base(station), "127.0.0.2") as other,
        _from(_base(station), "127.0.0.3") as third,
    ):
        greedy_opens = [await _open(greedy) for _ in range(3)]
        other_open = await _open(other)
        third_open = await _open(third)  # the station's bound for all of them: 3 live

    assert greedy_opens == [201, 201, 429]  # its share a minute
    assert other_open == 201  # was 429: the greedy payer had used the shared agent's 2
    assert third_open == 429


async def test_unknown_charge_points_are_counted_per_unregistered_payer(
    database_url: str,
) -> None:
    settings = {**OPEN, "max_open_negotiations_per_agent": 20}
    async with (
        station_with(database_url, unknown_charge_points_per_minute=2, **settings) as station,
        _from(_base(station), "127.0.0.1") as prober,
        _from(_base(station), "127.0.0.2") as other,
    ):
        probes = [await _open(prober, f"CP-NONE-{n}") for n in range(3)]
        other_open = await _open(other)

    assert probes == [404, 404, 429]
    assert other_open == 201  # was 429: the prober had spent the shared agent's probes


async def test_unsigned_requests_in_flight_count_against_their_address(
    database_url: str,
) -> None:
    settings = {**OPEN, "max_requests_in_flight_per_address": 2}
    body = b'{"charge_point_id": "CP-1", "energy_kwh": "5"}'
    head = (
        "POST /v1/negotiations HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    async with station_with(database_url, **settings) as station:
        held = []
        for _ in range(2):  # bodies one byte short: in flight for as long as the test likes
            reader, writer = await asyncio.open_connection("127.0.0.1", station.http_port)
            writer.write(head + body[:-1])
            await writer.drain()
            held.append((reader, writer))
        for _ in range(200):
            if station.api.state.in_flight_per_site.total() == 2:
                break
            await asyncio.sleep(0.02)
        async with (
            _from(_base(station), "127.0.0.1") as same,
            _from(_base(station), "127.0.0.2") as other,
        ):
            refused = await _open(same)
            served = await _open(other)
        answers = []
        for reader, writer in held:
            writer.write(body[-1:])
            await writer.drain()
            answers.append(int((await reader.readline()).split()[1]))
            writer.close()

    assert (refused, served, answers) == (429, 201, [201, 201])
