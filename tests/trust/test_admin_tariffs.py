"""Tariffs and the pricing policy through the operator API."""

from __future__ import annotations

import json

import httpx

from tests.trust.test_identity import assert_problem

TARIFF = {
    "currency": "usd",
    "energy_price_per_kwh": "0.4500",
    "session_fee": "0.50",
    "idle_fee_per_minute": "0.10",
    "idle_grace_minutes": 10,
    "max_power_kw": "150",
}


async def test_default_and_charge_point_tariffs_are_stored_listed_and_dropped(
    admin: httpx.AsyncClient,
) -> None:
    default = await admin.put("/v1/admin/tariffs/default", json=TARIFF)
    own = await admin.put(
        "/v1/admin/tariffs/charge-points/CP-1", json={**TARIFF, "energy_price_per_kwh": "0.39"}
    )

    listed = (await admin.get("/v1/admin/tariffs")).json()
    dropped = await admin.delete("/v1/admin/tariffs/charge-points/CP-1")
    again = await admin.delete("/v1/admin/tariffs/charge-points/CP-1")

    assert default.status_code == 200, default.text
    assert own.json()["tariff"]["energy_price_per_kwh"] == "0.3900"
    assert [(t["charge_point_id"], t["tariff"]["energy_price_per_kwh"]) for t in listed] == [
        ("*", "0.4500"),
        ("CP-1", "0.3900"),
    ]
    assert dropped.status_code == 204
    assert_problem(again, 404, "not_found")
    audit = [json.loads(x) for x in (await admin.get("/v1/admin/audit")).text.splitlines()]
    assert [r["action"] for r in audit] == ["tariff.set", "tariff.set", "tariff.deleted"]


BAD_TARIFFS = [
    {"energy_price_per_kwh": "0.45001"},
    {"energy_price_per_kwh": "-1"},
    {"energy_price_per_kwh": "1e9"},
    {"energy_price_per_kwh": 0.45},
    {"session_fee": "99999999"},
    {"currency": "dollars"},
    {"min_cost": "5", "max_cost": "1"},
    {"idle_grace_minutes": -1},
    {"max_power_kw": "0"},
    {"surprise": 1},
]


async def test_bad_tariffs_are_a_422_problem(admin: httpx.AsyncClient) -> None:
    for overrides in BAD_TARIFFS:
        response = await admin.put("/v1/admin/tariffs/default", json={**TARIFF, **overrides})

        assert_problem(response, 422, "validation_error")


async def test_the_pricing_policy_is_stored_and_read_back(admin: httpx.AsyncClient) -> None:
    missing = await admin.get("/v1/admin/tariffs/policy")
    policy = {"currency": "usd", "list_price_per_kwh": "0.45", "floor_price_per_kwh": "0.30"}

    stored = await admin.put("/v1/admin/tariffs/policy", json=policy)
    read = await admin.get("/v1/admin/tariffs/policy", params={"charge_point_id": "CP-9"})

    assert_problem(missing, 404, "not_found")
    assert stored.status_code == 200, stored.text
    assert read.json()["floor_price_per_kwh"] == "0.30"


BAD_POLICIES = [
    {},
    {"currency": "usd", "list_price_per_kwh": "0.20", "floor_price_per_kwh": "0.30"},
    {"currency": "usd", "list_price_per_kwh": "NaN", "floor_price_per_kwh": "0.30"},
    {"currency": "usd", "list_price_per_kwh": "Infinity", "floor_price_per_kwh": "0.30"},
    {"currency": "usd", "list_price_per_kwh": "x", "floor_price_per_kwh": "0.30"},
    {"currency": "US", "list_price_per_kwh": "0.45", "floor_price_per_kwh": "0.30"},
    {
        "currency": "usd",
        "list_price_per_kwh": "0.45",
        "floor_price_per_kwh": "0.30",
        "time_of_day": [{"start_hour": 25, "multiplier": "1"}],
    },
]


async def test_bad_policies_are_a_422_problem(admin: httpx.AsyncClient) -> None:
    for policy in BAD_POLICIES:
        response = await admin.put("/v1/admin/tariffs/policy", json=policy)

        assert_problem(response, 422, "validation_error")
