"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection

from station.store.db import Database
from station.store.models import Base


def _diff(connection: Connection) -> list[object]:
    context = MigrationContext.configure(connection, opts={"compare_type": True})
    return list(compare_metadata(context, Base.metadata))


async def test_migrations_match_the_models(db: Database) -> None:
    async with db.engine.connect() as connection:
        diff = await connection.run_sync(_diff)

    assert diff == []


async def test_upgrade_twice_is_a_no_op(db: Database) -> None:
    await db.upgrade()

    async with db.engine.connect() as connection:
        assert await connection.run_sync(_diff) == []
