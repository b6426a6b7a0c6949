"""Every HTTP error is a problem document; a value the database refuses is a 422."""

from __future__ import annotations

import httpx
from fastapi import FastAPI
from sqlalchemy import text

from station.api import problems
from station.store.db import Database
from station.store.unit_of_work import SqlUnitsOfWork


def _app(db: Database) -> FastAPI:
    app = FastAPI()
    problems.install(app)

    @app.get("/store")
    async def store(value: str) -> dict[str, str]:
        async with db.session() as session:
            stored = await session.scalar(text("SELECT CAST(:v AS INTEGER)"), {"v": value})
        return {"stored": str(stored)}

    @app.get("/nul")
    async def nul(value: str) -> dict[str, str]:
        async with db.session() as session:
            stored = await session.scalar(text("SELECT CAST(:v AS TEXT)"), {"v": value})
        return {"stored": str(stored)}

    @app.get("/zero")
    async def zero() -> None:
        async with db.session() as session:
            await session.scalar(text("SELECT 1 / 0"))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    return app


async def test_a_value_postgresql_refuses_is_a_422_problem_not_a_500(database_url: str) -> None:
    db = Database(database_url)  # SQLite casts anything: PostgreSQL refuses, the point here
    transport = httpx.ASGITransport(app=_app(db), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            not_a_number = await client.get("/store", params={"value": "not a number"})
            with_nul = await client.get("/nul", params={"value": "a\x00b"})
    finally:
        await db.dispose()

    if db.is_sqlite:
        assert (not_a_number.status_code, with_nul.status_code) == (200, 200)
        return
    for response in (not_a_number, with_nul):
        assert response.status_code == 422
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "validation_error"


async def test_a_database_fault_that_is_not_bad_input_stays_a_500(database_url: str) -> None:
    db = Database(database_url)
    transport = httpx.ASGITransport(app=_app(db), raise_app_exceptions=False)
    try:
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            response = await client.get("/zero")
    finally:
        await db.dispose()

    if db.is_sqlite:  # SQLite answers NULL for 1 / 0
        assert response.status_code == 200
        return
    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"


async def test_an_unexpected_error_is_a_500_problem_without_internals() -> None:
    db = Database("sqlite+aiosqlite:///:memory:")
    transport = httpx.ASGITransport(app=_app(db), raise_app_exceptions=False)

    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom")
    await db.dispose()

    assert response.status_code == 500
    assert response.json()["code"] == "internal_error"
    assert "secret" not in response.text


async def test_a_unit_of_work_on_an_unreachable_database_is_a_503_with_retry_after() -> None:
    db = Database("postgresql://nobody@127.0.0.1:1/none")  # nothing listens on port 1
    app = FastAPI()
    problems.install(app)

    @app.get("/agents")
    async def agents() -> list[str]:
        async with SqlUnitsOfWork(db).reader() as uow:
            return [a.agent_id for a in await uow.agents.list()]

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/agents")
    await db.dispose()

    assert response.status_code == 503
    assert response.json()["code"] == "station_unavailable"
    assert int(response.headers["retry-after"]) > 0
