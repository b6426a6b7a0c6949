"""A running station with an operator client and one signed agent (the e2e world), and the
dashboard signed in over real HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from tests.e2e.conftest import ADMIN_TOKEN, World, make_world, stripe_client, world

__all__ = ["make_world", "signed_in", "stripe_client", "world"]


@asynccontextmanager
async def signed_in(world: World) -> AsyncIterator[httpx.AsyncClient]:
    """A browser-like client holding the dashboard cookie."""
    async with httpx.AsyncClient(base_url=world.http, timeout=15) as client:
        response = await client.post("/dashboard/login", data={"token": ADMIN_TOKEN})
        assert response.status_code == 303, response.text
        yield client
