"""The dashboard in headless Chromium (Playwright driving Debian's ``chromium``).

An operator signs in, watches a simulated session's chart draw itself from
the live event stream and its row settle, suspends an agent, and opens
``/docs`` — all with every request to any host but the station refused, so
a page that needs the internet shows it here. Screenshots go to a temporary
folder, and to ``$CI_ARTIFACTS/dashboard`` when that is set; the chart's
screenshot is checked for drawn power and cost lines, not a blank box.

Outside CI the test skips when chromium is missing; under CI it must run.
"""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.e2e.conftest import ADMIN_TOKEN, World, battery
from tests.e2e.test_payment_flow import wait_for_status

CHROMIUM = Path(os.environ.get("CHARGEPAY_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
POWER_RGB, COST_RGB = (0x1F, 0x77, 0xD0), (0xD9, 0x82, 0x2B)  # dashboard.css --power, --cost

# The pixels of a PNG (decoded by the browser) close to each of two colours.
COUNT_COLOURS = """
async ([png, colours]) => {
  const image = new Image();
  image.src = "data:image/png;base64," + png;
  await image.decode();
  const canvas = document.createElement("canvas");
  canvas.width = image.width;
  canvas.height = image.height;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const data = context.getImageData(0, 0, image.width, image.height).data;
  const counts = colours.map(() => 0);
  for (let i = 0; i < data.length; i += 4) {
    colours.forEach(([r, g, b], k) => {
      if (Math.abs(data[i] - r) + Math.abs(data[i + 1] - g) + Math.abs(data[i + 2] - b) < 60) {
        counts[k] += 1;
      }
    });
  }
  return counts;
}
"""


def _chromium_or_skip() -> str:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is required under CI (.ci/run installs Debian's chromium)")
        pytest.skip(f"no {CHROMIUM} (apt-get install chromium)")
    return str(CHROMIUM)


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    executable = _chromium_or_skip()
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=executable, args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield browser
        finally:
            await browser.close()


@pytest.fixture
def screenshots(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "screenshots"
    folder.mkdir()
    yield folder
    artifacts = os.environ.get("CI_ARTIFACTS")
    if artifacts:
        target = Path(artifacts) / "dashboard"
        target.mkdir(parents=True, exist_ok=True)
        for shot in folder.iterdir():
            shutil.copy2(shot, target / shot.name)


async def _colours(page: Any, png: bytes) -> list[int]:
    counts: list[int] = await page.evaluate(
        COUNT_COLOURS, [base64.b64encode(png).decode(), [POWER_RGB, COST_RGB]]
    )
    return counts


async def _until(predicate: Any, timeout_s: float = 20) -> None:
    async with asyncio.timeout(timeout_s):
        while not await predicate():  # noqa: ASYNC110 (polling the browser's page)
            await asyncio.sleep(0.1)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_an_operator_follows_a_session_live_suspends_an_agent_and_reads_the_docs_offline(
    world: World, chromium: Any, screenshots: Path
) -> None:
    station = urlsplit(world.http).netloc
    refused: list[str] = []
    context = await chromium.new_context(viewport={"width": 1200, "height": 1400})

    async def only_the_station(route: Any) -> None:
        if urlsplit(route.request.url).netloc == station:
            await route.continue_()
        else:
            refused.append(route.request.url)
            await route.abort()

    await context.route("**/*", only_the_station)
    page = await context.new_page()
    page_errors: list[str] = []
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    cp = await world.charge_point("ocpp2.0.1", time_scale=60, meter_interval_s=30)
    async with cp:
        await asyncio.wait_for(cp.booted.wait(), 10)

        # Sign in: the form, then the page; the token in neither URL nor script-readable cookie.
        await page.goto(f"{world.http}/dashboard")
        assert page.url.endswith("/dashboard/login")
        await page.fill("#token", ADMIN_TOKEN)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{world.http}/dashboard")
        await page.wait_for_selector("#live.on")
        (cookie,) = await context.cookies()
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert ADMIN_TOKEN not in page.url and ADMIN_TOKEN not in cookie["value"]
        assert await page.evaluate("document.cookie") == ""
        await page.screenshot(path=screenshots / "1-signed-in.png", full_page=True)

        # A session: its chart fills from the event stream, then its row settles.
        plug = cp.plug_in(1, battery("6"))
        negotiation = await world.negotiate(cp, "6")
        response = await world.pay(negotiation, "10.00")
        session_id = response.json()["session_id"]
        chart = page.locator("#chart")

        async def points() -> int:
            if await chart.get_attribute("data-session") != session_id:
                return 0
            return int(await chart.get_attribute("data-points") or 0)

        await _until(lambda: _at_least(points, 3))
        early_points = await points()
        early_line = await page.locator("#chart polyline.cost").get_attribute("points")
        early_png = await chart.screenshot(path=screenshots / "2-chart-early.png")
        await page.screenshot(path=screenshots / "3-charging.png", full_page=True)
        row = page.locator(f'#sessions tr[data-session-id="{session_id}"]')
        await _until(lambda: _has_status(row, "settled"), timeout_s=30)
        await asyncio.wait_for(plug.ended.wait(), 10)
        settled = await wait_for_status(world, session_id, "settled")
        await _until(lambda: _text_is(row.locator(".captured"), f"{settled['captured']} usd"))
        late_points = await points()
        late_line = await page.locator("#chart polyline.cost").get_attribute("points")
        late_png = await chart.screenshot(path=screenshots / "4-chart-settled.png")
        await page.screenshot(path=screenshots / "5-settled.png", full_page=True)

        assert late_points > early_points >= 3
        assert late_line != early_line
        early_power, early_cost = await _colours(page, early_png)
        late_power, late_cost = await _colours(page, late_png)
        assert early_power > 50 and early_cost > 50, "the chart is blank"
        assert late_power > early_power or late_cost > early_cost
        assert await row.locator(".kwh").inner_text() == settled["energy_kwh"]
        captured = page.locator('[data-money="usd:captured"] .value')
        await _until(lambda: _text_is(captured, settled["captured"]))

        # Suspend the agent from its row.
        agent_row = page.locator(f'#agents tr[data-agent-id="{world.agent_id}"]')
        await agent_row.locator("input").fill("lost key")
        await agent_row.locator("button", has_text="Suspend").click()
        await _until(lambda: _has_status(agent_row, "suspended"))
        await page.screenshot(path=screenshots / "6-agent-suspended.png", full_page=True)
        agent = (await world.admin.get(f"/v1/admin/agents/{world.agent_id}")).json()
        assert (agent["status"], agent["suspended_reason"]) == ("suspended", "lost key")

    # A page opened afterwards draws the settled session's whole chart from the station's memory.
    later = await context.new_page()
    later.on("pageerror", lambda error: page_errors.append(str(error)))
    await later.goto(f"{world.http}/dashboard")
    await later.locator(f'#sessions tr[data-session-id="{session_id}"]').click()
    later_chart = later.locator("#chart")
    await _until(lambda: _text_is_attr(later_chart, "data-points", str(late_points)))
    assert await later.locator("#chart polyline.cost").get_attribute("points") == late_line
    await later.screenshot(path=screenshots / "7-reopened.png", full_page=True)
    await later.close()

    # The API docs, with nothing from outside.
    docs = await context.new_page()
    docs.on("pageerror", lambda error: page_errors.append(str(error)))
    await docs.goto(f"{world.http}/docs")
    await docs.wait_for_selector(".swagger-ui .info .title")
    await docs.wait_for_selector(".opblock")
    assert "chargepay station" in await docs.locator(".swagger-ui .info .title").inner_text()
    assert await docs.locator(".opblock").count() > 10
    await docs.screenshot(path=screenshots / "8-docs.png")
    await docs.goto(f"{world.http}/redoc")
    await docs.wait_for_selector("redoc h1, [role=navigation]", state="attached")
    await docs.wait_for_selector("text=chargepay station")
    await docs.screenshot(path=screenshots / "9-redoc.png")
    await context.close()

    assert refused == [], f"the pages asked for other hosts: {refused}"
    assert page_errors == []
    assert _names(screenshots) == [
        "1-signed-in.png",
        "2-chart-early.png",
        "3-charging.png",
        "4-chart-settled.png",
        "5-settled.png",
        "6-agent-suspended.png",
        "7-reopened.png",
        "8-docs.png",
        "9-redoc.png",
    ]


async def _at_least(count: Any, n: int) -> bool:
    return bool(await count() >= n)


async def _has_status(row: Any, status: str) -> bool:
    return bool(await row.count() and await row.get_attribute("data-status") == status)


async def _text_is(locator: Any, text: str) -> bool:
    return bool(await locator.count() and (await locator.inner_text()).strip() == text)


async def _text_is_attr(locator: Any, name: str, value: str) -> bool:
    return bool(await locator.get_attribute(name) == value)
