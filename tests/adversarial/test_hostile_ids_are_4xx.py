"""Hostile ids in paths and bodies (NUL, Unicode, surrogates, oversized) get a
problem+json 4xx on both databases, never a 5xx."""

from __future__ import annotations

from urllib.parse import quote

import pytest

from tests.e2e.conftest import World

HOSTILE_IDS = [
    pytest.param("ses_\x00x", id="nul"),
    pytest.param("ses_" + "é" * 3000, id="long-unicode"),
    pytest.param("ses_\U0001f50c\u202e", id="emoji-and-bidi"),
    pytest.param("ses_\ud800", id="lone-surrogate"),
]


def path_id(raw: str) -> str:
    return quote(raw.encode("utf-8", "surrogatepass"), safe="")


@pytest.mark.parametrize("raw_id", HOSTILE_IDS)
async def test_a_hostile_id_in_an_agent_path_is_a_4xx_problem(world: World, raw_id: str) -> None:
    sid = path_id(raw_id)

    responses = {
        "session": await world.agent.get(f"/v1/sessions/{sid}"),
        "events": await world.agent.get(f"/v1/sessions/{sid}/events"),
        "receipt": await world.agent.get(f"/v1/sessions/{sid}/receipt"),
        "stop": await world.agent.post(f"/v1/sessions/{sid}/stop"),
        "counter": await world.agent.post(f"/v1/negotiations/{sid}/counter", json={}),
        "accept": await world.agent.post(
            f"/v1/negotiations/{sid}/accept", json={"offer_id": "off_x", "cap": "5.00"}
        ),
        "admin.session": await world.admin.get(f"/v1/admin/sessions/{sid}"),
    }

    statuses = {name: r.status_code for name, r in responses.items()}
    assert all(400 <= s < 500 for s in statuses.values()), statuses
    for response in responses.values():
        assert response.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize("escaped_id", ["CP-\\u0000", "CP-\\ud800"], ids=["nul", "lone-surrogate"])
async def test_a_hostile_charge_point_id_in_a_negotiation_body_is_a_4xx_problem(
    world: World, escaped_id: str
) -> None:
    body = '{"charge_point_id": "' + escaped_id + '", "energy_kwh": "5"}'

    response = await world.agent.post(
        "/v1/negotiations", content=body, headers={"content-type": "application/json"}
    )

    assert 400 <= response.status_code < 500, response.text
    assert response.headers["content-type"] == "application/problem+json"
