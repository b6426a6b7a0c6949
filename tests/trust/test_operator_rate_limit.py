"""The operator API and /metrics under a flood of wrong bearer tokens (issue 15 item 7).

Wrong tokens from one address past ``admin_auth_failures_per_minute`` get 429
``rate_limited`` with ``Retry-After``; the right token is never refused.
``/metrics`` (money held, captured, released) takes the metrics token or the
admin token and nothing else.
"""

from __future__ import annotations

import httpx

from station.api.rate_limits import FailureWindow
from station.app import running_station
from tests.trust.conftest import ADMIN_TOKEN, base_url, station_settings

METRICS_TOKEN = "test-metrics-token-0123456789"


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_wrong_tokens_past_the_limit_are_429_and_the_right_token_still_gets_in(
    database_url: str,
) -> None:
    settings = station_settings(database_url, admin_auth_failures_per_minute=5)
    async with (
        running_station(settings) as station,
        httpx.AsyncClient(base_url=base_url(station)) as client,
    ):
        wrong = [
            await client.get("/v1/admin/agents", headers=_bearer(f"guess-{i}")) for i in range(8)
        ]
        right = await client.get("/v1/admin/agents", headers=_bearer(ADMIN_TOKEN))
        after = await client.get("/v1/admin/agents", headers=_bearer("guess-again"))
        metrics = await client.get("/metrics", headers=_bearer(ADMIN_TOKEN))

    assert [r.status_code for r in wrong] == [401] * 5 + [429] * 3
    refused = wrong[-1]
    assert refused.headers["content-type"].startswith("application/problem+json")
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert right.status_code == 200, right.text
    assert after.status_code == 429
    assert 'chargepay_http_rate_limited_total{limit="admin_auth"} 4.0' in metrics.text


async def test_metrics_take_the_metrics_token_or_the_admin_token_only(database_url: str) -> None:
    settings = station_settings(database_url, metrics_token=METRICS_TOKEN)
    async with (
        running_station(settings) as station,
        httpx.AsyncClient(base_url=base_url(station)) as client,
    ):
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers=_bearer("not-the-token"))
        scraper = await client.get("/metrics", headers=_bearer(METRICS_TOKEN))
        operator = await client.get("/metrics", headers=_bearer(ADMIN_TOKEN))
        # The metrics token is no key to the operator API.
        admin_with_metrics_token = await client.get(
            "/v1/admin/agents", headers=_bearer(METRICS_TOKEN)
        )

    assert anonymous.status_code == 401
    assert anonymous.json()["code"] == "unauthenticated"
    assert "chargepay_money_held" not in anonymous.text
    assert wrong.status_code == 401
    assert scraper.status_code == 200 and "chargepay_sessions" in scraper.text
    assert operator.status_code == 200
    assert admin_with_metrics_token.status_code == 401


def test_a_failure_window_ends_and_its_keys_are_bounded() -> None:
    now = [0.0]
    window = FailureWindow(limit=2, window_s=60, max_keys=100, clock=lambda: now[0])
    window.record("a")
    window.record("a")
    assert window.retry_after("a") == 60
    now[0] = 59.5
    assert window.retry_after("a") == 0.5
    now[0] = 60
    assert window.retry_after("a") is None
    for i in range(1000):
        window.record(f"addr-{i}")
    assert len(window) == 100
