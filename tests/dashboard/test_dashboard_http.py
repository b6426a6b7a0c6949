"""The dashboard over plain HTTP: sign-in, the cookie, CSRF, the snapshot, the event stream."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx

from station.api import dashboard_auth
from station.app import running_station
from tests.dashboard.conftest import signed_in
from tests.e2e.conftest import ADMIN_TOKEN, World, battery, settings_for
from tests.e2e.test_payment_flow import wait_for_status


async def test_the_dashboard_asks_for_the_token_in_a_form_and_keeps_it_out_of_the_url(
    world: World,
) -> None:
    async with httpx.AsyncClient(base_url=world.http, timeout=15) as browser:
        first = await browser.get("/dashboard")
        form = await browser.get("/dashboard/login")
        wrong = await browser.post("/dashboard/login", data={"token": "not-the-token"})
        in_query = await browser.post(f"/dashboard/login?token={ADMIN_TOKEN}", data={"x": "1"})
        other_site = await browser.post(
            "/dashboard/login", data={"token": ADMIN_TOKEN}, headers={"Origin": "null"}
        )
        state_before = await browser.get("/dashboard/api/state")
        right = await browser.post("/dashboard/login", data={"token": ADMIN_TOKEN})
        page = await browser.get("/dashboard")

    assert (first.status_code, first.headers["location"]) == (303, "/dashboard/login")
    assert form.status_code == 200 and 'method="post"' in form.text
    assert 'name="token" type="password"' in form.text
    assert wrong.status_code == 401 and "not the admin token" in wrong.text
    assert "set-cookie" not in wrong.headers and "set-cookie" not in in_query.headers
    assert in_query.status_code == 401
    assert other_site.status_code == 403 and "set-cookie" not in other_site.headers
    assert state_before.status_code == 401
    assert state_before.headers["content-type"] == "application/problem+json"
    assert (right.status_code, right.headers["location"]) == (303, "/dashboard")
    cookie = right.headers["set-cookie"]
    assert cookie.startswith(f"{dashboard_auth.COOKIE}=")
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/dashboard" in cookie
    assert ADMIN_TOKEN not in cookie and ADMIN_TOKEN not in right.headers["location"]
    assert page.status_code == 200 and "/dashboard/static/dashboard.js" in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert "<script>" not in page.text  # no inline script: the CSP allows none


async def test_wrong_tokens_in_the_form_share_the_operator_apis_limit_per_address(
    make_world: Callable[..., Any],
) -> None:
    async with (
        make_world(admin_auth_failures_per_minute=3) as world,
        httpx.AsyncClient(base_url=world.http, timeout=15) as browser,
    ):
        tries = [
            (await browser.post("/dashboard/login", data={"token": f"guess-{n}"})).status_code
            for n in range(3)
        ]
        limited = await browser.post("/dashboard/login", data={"token": "guess-4"})
        bearer = await browser.get("/v1/admin/agents", headers={"Authorization": "Bearer guess-5"})
        right = await browser.post("/dashboard/login", data={"token": ADMIN_TOKEN})

    assert tries == [401, 401, 401]
    assert limited.status_code == 429 and int(limited.headers["retry-after"]) >= 1
    assert "set-cookie" not in limited.headers and "Too many wrong tokens" in limited.text
    assert bearer.status_code == 429
    assert right.status_code == 303 and dashboard_auth.COOKIE in right.headers["set-cookie"]


def test_a_dashboard_cookie_is_refused_once_tampered_with_expired_or_the_token_rotated() -> None:
    from pydantic import SecretStr

    token, now = SecretStr("operator-token-0123456789"), 1_000_000.0
    cookie = dashboard_auth.issue_cookie(token, now=now)
    version, expires, mac = cookie.split(".")
    later_expiry = f"{version}.{int(expires) + 3600}.{mac}"

    assert dashboard_auth.cookie_valid(token, cookie, now=now + 60)
    assert not dashboard_auth.cookie_valid(token, later_expiry, now=now + 60)
    assert not dashboard_auth.cookie_valid(token, cookie, now=now + dashboard_auth.SESSION_S + 1)
    assert not dashboard_auth.cookie_valid(SecretStr("rotated-token-0123456789"), cookie, now=now)
    assert not dashboard_auth.cookie_valid(None, cookie, now=now)
    assert not dashboard_auth.cookie_valid(token, "v1.x.y", now=now)


async def test_suspend_needs_the_pages_csrf_token_and_its_own_origin(world: World) -> None:
    url = f"/dashboard/api/agents/{world.agent_id}/suspend"
    async with signed_in(world) as browser:
        csrf = (await browser.get("/dashboard/api/state")).json()["csrf"]
        no_token = await browser.post(url, json={"reason": "x"})
        cross_site = await browser.post(
            url,
            json={"reason": "x"},
            headers={"X-Chargepay-CSRF": csrf, "Origin": "https://evil.example"},
        )
        agent_after_refusals = (await world.admin.get(f"/v1/admin/agents/{world.agent_id}")).json()
        done = await browser.post(
            url, json={"reason": "card reported stolen"}, headers={"X-Chargepay-CSRF": csrf}
        )
        resumed = await browser.post(
            f"/dashboard/api/agents/{world.agent_id}/resume", headers={"X-Chargepay-CSRF": csrf}
        )
    audit_lines = (await world.admin.get("/v1/admin/audit")).text.splitlines()
    audit = [json.loads(line) for line in audit_lines]

    for refused in (no_token, cross_site):
        assert refused.status_code == 403
        assert refused.json()["code"] == "cross_site_refused"
    assert agent_after_refusals["status"] == "active"
    assert done.status_code == 200 and done.json()["status"] == "suspended"
    assert resumed.status_code == 200 and resumed.json()["status"] == "active"
    suspended = [row for row in audit if row["action"] == "agent.suspended"]
    assert [row["actor"] for row in suspended] == ["operator:dashboard"]


async def _read_events(response: httpx.Response, until: str, into: list[tuple[str, Any]]) -> None:
    name = None
    async for line in response.aiter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: ") and name is not None:
            into.append((name, json.loads(line[len("data: ") :])))
            if name == until:
                return


async def test_the_operator_stream_and_the_snapshot_follow_a_session_to_its_settlement(
    world: World,
) -> None:
    events: list[tuple[str, Any]] = []
    cp = await world.charge_point("ocpp2.0.1")
    async with signed_in(world) as browser, cp:
        unauthorised = await world.agent.get("/v1/admin/events")
        await asyncio.wait_for(cp.booted.wait(), 10)
        async with world.admin.stream("GET", "/v1/admin/events") as stream:
            plug = cp.plug_in(1, battery("6"))
            negotiation = await world.negotiate(cp, "6")
            response = await world.pay(negotiation, "10.00")
            session_id = response.json()["session_id"]
            while_held = (await browser.get("/dashboard/api/state")).json()
            await asyncio.wait_for(_read_events(stream, "settled", events), 30)
        await asyncio.wait_for(plug.ended.wait(), 20)
        settled = await wait_for_status(world, session_id, "settled")
        after = (await browser.get("/dashboard/api/state")).json()

    assert unauthorised.status_code == 401
    names = [name for name, _ in events]
    assert "meter" in names and names[-1] == "settled"
    assert {data["session_id"] for _, data in events} == {session_id}
    meters = [data for name, data in events if name == "meter"]
    assert Decimal(meters[-1]["cost"]) > 0 and meters[-1]["cap"] == "10.00"
    assert while_held["money"]["usd"]["held"] == "10.00"
    row = next(s for s in after["sessions"] if s["session_id"] == session_id)
    assert row["status"] == "settled" and row["captured"] == settled["captured"]
    captured = Decimal(settled["captured"])
    assert after["money"]["usd"] == {
        "held": "0.00",
        "captured": str(captured),
        "released": str(Decimal("10.00") - captured),
        "refunded": "0.00",
    }
    (point,) = [p for p in after["charge_points"] if p["charge_point_id"] == cp.charge_point_id]
    assert point["connected"] is True and point["ocpp_version"] == "ocpp2.0.1"
    (agent,) = after["agents"]
    assert agent["agent_id"] == world.agent_id and agent["limit_per_session"] == "100.00"


async def test_an_open_operator_stream_ends_cleanly_when_the_station_stops(
    database_url: str, stripe_url: str
) -> None:
    settings = settings_for(database_url, stripe_url, shutdown_timeout_s=30)
    lines: list[str] = []

    async with running_station(settings) as station:
        client = httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{station.http_port}",
            headers={"Authorization": f"Bearer {ADMIN_TOKEN}"},
            timeout=30,
        )
        async with client, client.stream("GET", "/v1/admin/events") as stream:
            line_iterator = stream.aiter_lines()
            lines.append(await anext(line_iterator))
            station.stop()
            async with asyncio.timeout(10):  # uvicorn's own grace would wait 15 s, then cut it
                lines.extend([line async for line in line_iterator])

    assert lines[0] == ": connected"
    assert "event: stopping" in lines


async def test_behind_a_tls_proxy_the_public_url_is_the_pages_origin_and_the_cookie_secure(
    make_world: Callable[..., Any],
) -> None:
    public = "https://pay.example.net"

    async with (
        make_world(public_url=public) as world,
        httpx.AsyncClient(base_url=world.http, timeout=15) as browser,
    ):
        other = await browser.post(
            "/dashboard/login",
            data={"token": ADMIN_TOKEN},
            headers={"Origin": "https://evil.example"},
        )
        proxied = await browser.post(
            "/dashboard/login", data={"token": ADMIN_TOKEN}, headers={"Origin": public}
        )

    assert other.status_code == 403
    assert proxied.status_code == 303 and "Secure" in proxied.headers["set-cookie"]
