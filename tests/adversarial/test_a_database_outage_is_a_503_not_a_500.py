"""A request the database cannot serve (an outage) is a 503 problem with Retry-After.

Seen in the fault campaign: accepts during a PostgreSQL outage answered 500, from
asyncpg's ``ConnectionError: unexpected connection_lost() call`` and SQLAlchemy's
invalidated connections. The request can be tried again: 503, never a 500.
"""

from __future__ import annotations

import asyncpg
import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import DBAPIError, IntegrityError

from station.api import problems


def _app(error: Exception) -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.get("/boom")
    async def boom() -> None:
        raise error

    return app


async def _get(error: Exception) -> httpx.Response:
    transport = httpx.ASGITransport(app=_app(error), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        return await client.get("/boom")


def _wrapped(orig: Exception, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, orig, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    "error",
    [
        ConnectionError("unexpected connection_lost() call"),
        ConnectionRefusedError(111, "Connect call failed"),
        _wrapped(Exception("closed"), invalidated=True),
        _wrapped(asyncpg.exceptions.ConnectionDoesNotExistError("closed mid-operation")),
    ],
    ids=["connection-lost", "refused", "invalidated", "asyncpg-closed"],
)
async def test_an_unreachable_database_is_a_503_with_retry_after(error: Exception) -> None:
    response = await _get(error)

    assert response.status_code == 503
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) > 0
    assert response.json()["code"] == "station_unavailable"


async def test_a_bug_is_still_a_500() -> None:
    assert (await _get(RuntimeError("a bug"))).status_code == 500
    integrity = IntegrityError("INSERT", {}, Exception("duplicate key"))
    assert (await _get(integrity)).status_code == 500
