"""/docs and /redoc load every asset from the station itself (no CDN, no fonts, no validator)."""

from __future__ import annotations

import re

import httpx
import pytest

from tests.e2e.conftest import World

ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']""")


@pytest.mark.parametrize(("page", "title"), [("/docs", "Swagger UI"), ("/redoc", "Redoc")])
async def test_the_api_docs_pages_name_only_assets_the_station_serves(
    world: World, page: str, title: str
) -> None:
    async with httpx.AsyncClient(base_url=world.http, timeout=15) as browser:
        html = (await browser.get(page)).text
        assets = ASSET.findall(html)
        assert assets, f"{title}: no assets named"
        assert all(url.startswith("/docs/assets/") for url in assets), assets
        assert not re.search(r"https?://", html), f"{title} names a host: {html}"
        fetched = {url: await browser.get(url) for url in assets}
        spec = await browser.get("/openapi.json")

    for url, response in fetched.items():
        assert response.status_code == 200, url
        assert len(response.content) > 1000, url
    assert spec.status_code == 200 and "/v1/negotiations" in spec.json()["paths"]
