"""`chargepay sessions …`, `tariffs …` and `agents remove` against a running station.

The commands run through typer's runner in a worker thread (they make
blocking HTTP calls to the station, which runs on this test's event loop).
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from station.cli import app
from tests.e2e.conftest import ADMIN_TOKEN, World, battery
from tests.e2e.test_payment_flow import wait_for_status


@pytest.fixture
def database_url(tmp_path: Path) -> str:  # SQLite is enough: the API does the work
    return f"sqlite+aiosqlite:///{tmp_path / 'station.db'}"


def cli(world: World) -> Callable[..., Any]:
    env = {
        "CHARGEPAY_STATION_URL": world.http,
        "CHARGEPAY_ADMIN_TOKEN": ADMIN_TOKEN,
        "CHARGEPAY_DATABASE_URL": str(world.station.settings.database_url),
    }

    async def run(*args: str) -> Result:
        return await asyncio.to_thread(CliRunner().invoke, app, list(args), env=env)

    return run


async def settled_session(world: World) -> tuple[dict[str, Any], Any]:
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("6"))
        negotiation = await world.negotiate(cp, "6")
        response = await world.pay(negotiation, "10.00")
        assert response.status_code == 201, response.text
        await asyncio.wait_for(plug.ended.wait(), 20)
        session = await wait_for_status(world, response.json()["session_id"], "settled")
    return session, plug


async def test_sessions_list_show_receipt_and_export_agree_with_the_receipt(
    world: World, tmp_path: Path
) -> None:
    run = cli(world)
    session, _ = await settled_session(world)
    sid = session["session_id"]

    listed = await run("sessions", "list", "--json")
    table = await run("sessions", "list", "--status", "settled")
    shown = await run("sessions", "show", sid, "--json")
    receipt = await run("sessions", "receipt", sid, "--json")
    receipt_table = await run("sessions", "receipt", sid)
    as_csv = await run("sessions", "export", "--format", "csv")
    as_cdr = await run("sessions", "export", "--format", "cdr", "-o", str(tmp_path / "cdr.json"))

    for result in (listed, table, shown, receipt, receipt_table, as_csv, as_cdr):
        assert result.exit_code == 0, result.output
    assert [s["session_id"] for s in json.loads(listed.stdout)] == [sid]
    assert sid in table.stdout and "settled" in table.stdout
    assert json.loads(shown.stdout)["meter_samples"]
    body = json.loads(receipt.stdout)
    assert body["captured"] == session["captured"]
    assert "captured" in receipt_table.stdout and body["captured"] in receipt_table.stdout
    [row] = list(csv.DictReader(io.StringIO(as_csv.stdout)))
    energy = Decimal(row["energy_kwh"]) * Decimal(row["price_per_kwh"])
    assert energy.quantize(Decimal("0.01")) + Decimal(row["fees"]) == Decimal(row["total"])
    assert row["captured"] == body["captured"]
    [cdr] = json.loads((tmp_path / "cdr.json").read_text())
    assert cdr["id"] == sid and cdr["currency"] == "USD"
    assert cdr["total_cost"] == {"excl_vat": float(Decimal(body["captured"]))}
    assert cdr["total_energy"] == float(Decimal(body["energy_kwh"]))
    assert cdr["cdr_location"]["id"] == body["charge_point_id"]
    assert cdr["tariffs"][0]["elements"][0]["price_components"][0]["type"] == "ENERGY"
    assert {"start_date_time", "end_date_time", "cdr_token", "auth_method", "last_updated"} <= set(
        cdr
    )


async def test_sessions_stop_stops_a_charging_session_and_is_audited(world: World) -> None:
    run = cli(world)
    cp = await world.charge_point("ocpp1.6")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("40"))
        negotiation = await world.negotiate(cp, "40")
        response = await world.pay(negotiation, "30.00")
        sid = response.json()["session_id"]
        await wait_for_status(world, sid, "charging")

        stopped = await run("sessions", "stop", sid)
        await asyncio.wait_for(plug.ended.wait(), 20)
        settled = await wait_for_status(world, sid, "settled")

    audit = (await world.admin.get("/v1/admin/audit")).text
    assert stopped.exit_code == 0, stopped.output
    assert stopped.stdout.startswith(f"{sid} ")
    assert settled["stop_reason"] == "operator_requested"
    assert Decimal(settled["captured"]) < Decimal("30.00")
    assert '"action": "session.stopped"' in audit or '"action":"session.stopped"' in audit


async def test_sessions_of_an_unknown_id_and_an_unreachable_station_are_one_line(
    world: World,
) -> None:
    run = cli(world)

    unknown = await run("sessions", "show", "ses_nobody")
    result = await asyncio.to_thread(
        CliRunner().invoke,
        app,
        ["sessions", "list", "--station", "http://127.0.0.1:9"],
        env={"CHARGEPAY_ADMIN_TOKEN": ADMIN_TOKEN},
    )

    assert unknown.exit_code == 2 and len(unknown.stderr.strip().splitlines()) == 1
    assert "404" in unknown.stderr and "not_found" in unknown.stderr
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "cannot reach the station at http://127.0.0.1:9" in result.stderr


async def test_tariffs_set_then_show(world: World) -> None:
    run = cli(world)

    default = await run("tariffs", "set", "--energy-price", "0.39", "--session-fee", "0.25")
    own = await run("tariffs", "set", "--charge-point", "CP-9", "--energy-price", "0.51")
    shown = await run("tariffs", "show", "--json")
    table = await run("tariffs", "show")
    refused = await run("tariffs", "set", "--energy-price", "cheap")

    assert default.exit_code == 0 and own.exit_code == 0, default.output + own.output
    prices = {
        t["charge_point_id"]: t["tariff"]["energy_price_per_kwh"] for t in json.loads(shown.stdout)
    }
    assert prices == {"*": "0.3900", "CP-9": "0.5100"}
    assert "CP-9" in table.stdout and "0.5100" in table.stdout
    assert refused.exit_code == 2 and "422" in refused.stderr


async def test_agents_remove_is_refused_while_a_session_is_live_then_done_and_audited(
    world: World,
) -> None:
    run = cli(world)
    cp = await world.charge_point("ocpp2.0.1")
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("4"))
        negotiation = await world.negotiate(cp, "4")
        response = await world.pay(negotiation, "10.00")
        sid = response.json()["session_id"]

        refused = await run("agents", "remove", world.agent_id, "--reason", "sold the car")
        await asyncio.wait_for(plug.ended.wait(), 20)
        await wait_for_status(world, sid, "settled")
    removed = await run("agents", "remove", world.agent_id, "--reason", "sold the car")
    listed = await run("agents", "list", "--status", "removed", "--json")
    after = await world.agent.get("/v1/agents/me")
    resumed = await run("agents", "resume", world.agent_id)

    assert refused.exit_code == 2, refused.output
    assert f"live session {sid}" in refused.stderr
    assert removed.exit_code == 0, removed.output
    assert [a["agent_id"] for a in json.loads(listed.stdout)] == [world.agent_id]
    assert after.status_code == 403
    assert resumed.exit_code == 2 and "removed" in resumed.stderr
    audit = (await world.admin.get("/v1/admin/audit")).text
    assert "agent.removed" in audit


async def test_chargepoints_remove_is_refused_while_live_then_hides_it_and_refuses_its_login(
    world: World,
) -> None:
    from tests.ocpp.test_security import handshake_status

    run = cli(world)
    cp = await world.charge_point("ocpp2.0.1")
    cp_id = cp.charge_point_id
    path = f"/v1/admin/charge-points/{cp_id}/remove"
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)
        plug = cp.plug_in(1, battery("4"))
        negotiation = await world.negotiate(cp, "4")
        response = await world.pay(negotiation, "10.00")
        sid = response.json()["session_id"]

        refused_cli = await run("chargepoints", "remove", cp_id, "--reason", "decommissioned")
        refused_api = await world.admin.post(path, json={"reason": "decommissioned"})
        await asyncio.wait_for(plug.ended.wait(), 20)
        await wait_for_status(world, sid, "settled")
    before = await handshake_status(world.ocpp, cp_id, cp.password)
    removed = await world.admin.post(path, json={"reason": "decommissioned"})
    listed = await run("chargepoints", "list", "--json")
    listed_all = await run("chargepoints", "list", "--all", "--json")
    table_all = await run("chargepoints", "list", "--all")
    api_listed = await world.admin.get("/v1/admin/charge-points")
    after = await handshake_status(world.ocpp, cp_id, cp.password)
    unknown = await run("chargepoints", "remove", "CP-NOPE", "--reason", "typo")
    negotiation = await world.agent.post(
        "/v1/negotiations", json={"charge_point_id": cp_id, "evse_id": 1, "energy_kwh": "4"}
    )

    assert refused_cli.exit_code == 2, refused_cli.output
    assert f"live session {sid}" in refused_cli.stderr
    assert len(refused_cli.stderr.strip().splitlines()) == 1
    assert refused_api.status_code == 409, refused_api.text
    assert refused_api.headers["content-type"].startswith("application/problem+json")
    assert (before, after) == (101, 401)
    assert removed.status_code == 200, removed.text
    assert removed.json()["removed_at"] is not None
    assert cp_id not in [p["charge_point_id"] for p in json.loads(listed.stdout)]
    assert cp_id not in [p["charge_point_id"] for p in api_listed.json()]
    [shown] = [p for p in json.loads(listed_all.stdout) if p["charge_point_id"] == cp_id]
    assert shown["removed_at"] is not None
    assert cp_id in table_all.stdout and "removed" in table_all.stdout
    assert unknown.exit_code == 2 and "not registered" in unknown.stderr
    assert negotiation.status_code == 404  # an agent cannot tell it from an unknown id
    audit = (await world.admin.get("/v1/admin/audit")).text
    assert '"charge_point.removed"' in audit and "decommissioned" in audit

    # Registering the id again brings it back, with the new password.
    again = await world.admin.post(
        "/v1/admin/charge-points", json={"charge_point_id": cp_id, "password": "n" * 20}
    )
    assert again.status_code == 201, again.text
    assert await handshake_status(world.ocpp, cp_id, "n" * 20) == 101
