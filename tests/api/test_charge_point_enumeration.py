"""An agent cannot list the station's charge points by asking (issue 15 item 9, HTTP side).

A charge point that does not exist and one the agent may not use answer the
same 404 document. Past ``unknown_charge_points_per_minute`` such answers,
every open of that agent is 429 ``rate_limited`` until its minute ends —
known ids too, so the limit leaves no oracle — while other agents go on.
"""

from __future__ import annotations

import httpx

from tests.api.test_ceilings import _admin, _base, new_agent, station_with


def _open(charge_point_id: str) -> dict[str, str]:
    return {"charge_point_id": charge_point_id, "energy_kwh": "20"}


async def test_probing_unknown_charge_points_is_cut_off_with_429(database_url: str) -> None:
    async with station_with(database_url, unknown_charge_points_per_minute=5) as station:
        prober, other = await new_agent(station), await new_agent(station)
        async with (
            httpx.AsyncClient(base_url=_base(station), auth=prober) as client,
            httpx.AsyncClient(base_url=_base(station), auth=other) as bystander,
            _admin(station) as admin,
        ):
            probes = [
                await client.post("/v1/negotiations", json=_open(f"CP-X{i}")) for i in range(8)
            ]
            known = await client.post("/v1/negotiations", json=_open("CP-1"))
            theirs = await bystander.post("/v1/negotiations", json=_open("CP-1"))
            metrics = (await admin.get("/metrics")).text

    assert [r.status_code for r in probes] == [404] * 5 + [429] * 3
    assert probes[-1].json()["code"] == "rate_limited"
    assert 1 <= int(probes[-1].headers["Retry-After"]) <= 60
    # Locked out, the prober cannot tell a known id from an unknown one.
    assert known.status_code == 429
    assert theirs.status_code == 201
    assert 'chargepay_http_rate_limited_total{limit="unknown_charge_points"} 4.0' in metrics


async def test_an_unknown_and_a_forbidden_charge_point_answer_alike(database_url: str) -> None:
    async with station_with(database_url) as station:
        async with _admin(station) as admin:
            await admin.post(
                "/v1/admin/charge-points",
                json={"charge_point_id": "CP-2", "password": "ceilings-password-0002"},
            )
        agent = await new_agent(station)
        async with _admin(station) as admin:
            response = await admin.patch(
                f"/v1/admin/agents/{agent.agent_id}", json={"allowed_charge_points": ["CP-1"]}
            )
            assert response.status_code == 200, response.text
        async with httpx.AsyncClient(base_url=_base(station), auth=agent) as client:
            forbidden = await client.post("/v1/negotiations", json=_open("CP-2"))
            unknown = await client.post("/v1/negotiations", json=_open("CP-9"))

    assert forbidden.status_code == unknown.status_code == 404
    assert forbidden.headers["content-type"] == unknown.headers["content-type"]
    same = {k: v for k, v in forbidden.json().items() if k != "detail"}
    assert same == {k: v for k, v in unknown.json().items() if k != "detail"}
    assert forbidden.json()["detail"].replace("CP-2", "CP-9") == unknown.json()["detail"]
