"""The operator API over real HTTP: the token guards it, bad input gets a 4xx problem."""

from __future__ import annotations

import json

import httpx
from sqlalchemy import update

from station.app import Station
from station.store.audit import AuditRow
from tests.trust.conftest import ADMIN_TOKEN, base_url, register_agent
from tests.trust.test_identity import assert_problem
from vehicle.signing import generate_keypair, public_key_b64


def agent_body(**overrides: object) -> dict[str, object]:
    key, _ = generate_keypair()
    return {
        "name": "fleet-car-7",
        "public_key": public_key_b64(key),
        "currency": "usd",
        "limit_per_session": "50.00",
        "limit_per_window": "200.00",
        "window_hours": 24,
        **overrides,
    }


async def test_the_operator_api_needs_the_admin_token(station: Station) -> None:
    for headers in (
        {},
        {"Authorization": "Bearer wrong"},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
    ):
        async with httpx.AsyncClient(base_url=base_url(station), headers=headers) as client:
            listed = await client.get("/v1/admin/agents")
            created = await client.post("/v1/admin/agents", json=agent_body())

        assert_problem(listed, 401, "unauthenticated")
        assert_problem(created, 401, "unauthenticated")


async def test_registering_an_agent_answers_with_its_id_and_limits(
    admin: httpx.AsyncClient,
) -> None:
    response = await admin.post(
        "/v1/admin/agents", json=agent_body(owner="acme fleet", allowed_charge_points=["CP-1"])
    )

    body = response.json()
    assert response.status_code == 201, response.text
    assert body["agent_id"].startswith("agt_")
    assert body["limit_per_session"] == "50.00"
    assert body["status"] == "active"
    assert body["allowed_charge_points"] == ["CP-1"]
    listed = (await admin.get("/v1/admin/agents")).json()
    assert [a["agent_id"] for a in listed] == [body["agent_id"]]
    shown = (await admin.get(f"/v1/admin/agents/{body['agent_id']}")).json()
    assert shown["remaining"] == "50.00"


BAD_AGENT_INPUT = [
    {"public_key": "not base64!"},
    {"public_key": public_key_b64(generate_keypair()[0])[:-4]},
    {"public_key": "AAAA"},
    {"limit_per_session": 50},
    {"limit_per_session": "50.001"},
    {"limit_per_session": "-1"},
    {"limit_per_window": "1e3"},
    {"limit_per_window": "NaN"},
    {"currency": "USD"},
    {"window_hours": 0},
    {"window_hours": "a day"},
    {"name": ""},
    {"name": None},
    {"allowed_charge_points": "CP-1"},
    {"unexpected": True},
]


async def test_bad_agent_input_is_a_422_problem(admin: httpx.AsyncClient) -> None:
    for overrides in BAD_AGENT_INPUT:
        response = await admin.post("/v1/admin/agents", json=agent_body(**overrides))

        assert_problem(response, 422, "validation_error")


async def test_missing_fields_are_a_422_problem(admin: httpx.AsyncClient) -> None:
    for missing in ("name", "public_key", "currency", "limit_per_session"):
        body = agent_body()
        del body[missing]

        response = await admin.post("/v1/admin/agents", json=body)

        assert_problem(response, 422, "validation_error")


async def test_malformed_json_is_a_422_problem(admin: httpx.AsyncClient) -> None:
    for content in (b"", b"{", b"[]", b'"x"', b"\xff\xfe", b"null"):
        response = await admin.post(
            "/v1/admin/agents", content=content, headers={"Content-Type": "application/json"}
        )

        assert_problem(response, 422, "validation_error")


async def test_a_huge_body_is_a_413_problem(admin: httpx.AsyncClient) -> None:
    huge = json.dumps(agent_body(name="x" * 100_000)).encode()

    declared = await admin.post(
        "/v1/admin/agents", content=huge, headers={"Content-Type": "application/json"}
    )

    async def chunks():  # type: ignore[no-untyped-def]
        for start in range(0, len(huge), 8192):
            yield huge[start : start + 8192]

    streamed = await admin.post(
        "/v1/admin/agents", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(declared, 413, "validation_error")
    assert_problem(streamed, 413, "validation_error")


async def test_a_huge_body_to_an_agent_endpoint_is_a_413_problem(station: Station) -> None:
    async with httpx.AsyncClient(base_url=base_url(station)) as client:
        response = await client.post("/v1/agents/me", content=b"x" * 200_000)

    assert_problem(response, 413, "validation_error")


async def test_unknown_agents_are_a_404_problem(admin: httpx.AsyncClient) -> None:
    for method, path, body in [
        ("GET", "/v1/admin/agents/agt_nobody", None),
        ("POST", "/v1/admin/agents/agt_nobody/suspend", {"reason": "x"}),
        ("POST", "/v1/admin/agents/agt_nobody/resume", {}),
    ]:
        response = await admin.request(method, path, json=body)

        assert_problem(response, 404, "not_found")


async def test_suspending_needs_a_reason(admin: httpx.AsyncClient) -> None:
    agent = await register_agent(admin)

    for body in ({}, {"reason": ""}, {"reason": 7}):
        response = await admin.post(f"/v1/admin/agents/{agent.agent_id}/suspend", json=body)
        assert_problem(response, 422, "validation_error")


async def test_suspension_and_pause_are_audited_with_who_and_why(admin: httpx.AsyncClient) -> None:
    agent = await register_agent(admin)
    await admin.post(f"/v1/admin/agents/{agent.agent_id}/suspend", json={"reason": "stolen car"})
    paused = await admin.post("/v1/admin/pause", json={"reason": "incident 42"})
    resumed = await admin.post("/v1/admin/resume")

    response = await admin.get("/v1/admin/audit")

    rows = [json.loads(line) for line in response.text.splitlines()]
    assert response.status_code == 200
    assert paused.json()["paused"] is True
    assert resumed.json()["paused"] is False
    assert [(r["action"], r["actor"]) for r in rows] == [
        ("agent.registered", "operator:alice"),
        ("agent.suspended", "operator:alice"),
        ("operator.paused", "operator:alice"),
        ("operator.resumed", "operator:alice"),
    ]
    assert rows[1]["data"]["reason"] == "stolen car"
    assert rows[2]["data"]["reason"] == "incident 42"
    assert rows[3]["prev_hash"] == rows[2]["hash"]


async def test_charge_points_are_registered_and_listed(admin: httpx.AsyncClient) -> None:
    created = await admin.post(
        "/v1/admin/charge-points", json={"charge_point_id": "CP-1", "password": "p" * 16}
    )
    again = await admin.post(
        "/v1/admin/charge-points", json={"charge_point_id": "CP-1", "password": "p" * 16}
    )
    short = await admin.post(
        "/v1/admin/charge-points", json={"charge_point_id": "CP-2", "password": "short"}
    )

    listed = (await admin.get("/v1/admin/charge-points")).json()

    assert created.status_code == 201, created.text
    assert again.status_code == 409
    assert_problem(short, 422, "validation_error")
    assert [(c["charge_point_id"], c["connected"]) for c in listed] == [("CP-1", False)]


async def test_the_audit_chain_is_verified_over_the_api(
    station: Station, admin: httpx.AsyncClient
) -> None:
    await register_agent(admin)
    await register_agent(admin)
    intact = (await admin.get("/v1/admin/audit/verify")).json()
    async with station.db.session() as session:
        await session.execute(update(AuditRow).where(AuditRow.seq == 1).values(actor="mallory"))

    broken = (await admin.get("/v1/admin/audit/verify")).json()

    assert (intact["ok"], intact["rows"]) == (True, 2)
    assert (broken["ok"], broken["broken_seq"]) == (False, 1)


async def test_an_agents_limits_and_key_are_changed_and_audited(admin: httpx.AsyncClient) -> None:
    agent = await register_agent(admin, limit_per_session="50.00")
    new_key, _ = generate_keypair()

    changed = await admin.patch(
        f"/v1/admin/agents/{agent.agent_id}",
        json={
            "limit_per_session": "80.00",
            "public_key": public_key_b64(new_key),
            "allowed_charge_points": ["CP-7"],
        },
    )
    opened = await admin.patch(
        f"/v1/admin/agents/{agent.agent_id}", json={"allowed_charge_points": None}
    )

    body = changed.json()
    assert changed.status_code == 200, changed.text
    assert (body["limit_per_session"], body["remaining"]) == ("80.00", "80.00")
    assert body["public_key"] == public_key_b64(new_key)
    assert body["allowed_charge_points"] == ["CP-7"]
    assert opened.json()["allowed_charge_points"] is None
    assert opened.json()["limit_per_window"] == "200.00"
    rows = [json.loads(x) for x in (await admin.get("/v1/admin/audit")).text.splitlines()]
    assert rows[-1]["action"] == "agent.updated"
    assert rows[-2]["data"]["limit_per_session"] == "80.00"


async def test_bad_agent_changes_are_a_4xx_problem(admin: httpx.AsyncClient) -> None:
    agent = await register_agent(admin)
    path = f"/v1/admin/agents/{agent.agent_id}"

    for body in (
        {"name": None},
        {"limit_per_window": "-5"},
        {"limit_per_session": "1.001"},
        {"public_key": "AAAA"},
        {"currency": "eur"},
        {"window_hours": 0},
    ):
        assert_problem(await admin.patch(path, json=body), 422, "validation_error")
    assert_problem(
        await admin.patch("/v1/admin/agents/agt_nobody", json={"name": "x"}), 404, "not_found"
    )
