"""Cluster tests run several real station processes on one PostgreSQL database."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator

import asyncpg
import pytest

from station.store.db import Database
from tests.conftest import _pg_create, _pg_drop, _pg_url

pytestmark = pytest.mark.postgres


@pytest.fixture
def pg_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh PostgreSQL database for one test's nodes: migrated, unless the test is
    marked ``unmigrated`` (its nodes, started at once, migrate it between them)."""
    name = f"chargepay_cluster_{uuid.uuid4().hex[:10]}"
    try:
        asyncio.run(_pg_create(name))
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    url = _pg_url(name)

    async def migrate() -> None:
        db = Database(url)
        try:
            await db.upgrade()
        finally:
            await db.dispose()

    try:
        if request.node.get_closest_marker("unmigrated") is None:
            asyncio.run(migrate())
        yield url
    finally:
        asyncio.run(_pg_drop(name))


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "unmigrated: the nodes start on an empty database")
