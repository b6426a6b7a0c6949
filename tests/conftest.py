"""Shared fixtures: a real database per test, on SQLite and on PostgreSQL.

`database_url` is parametrised over both back ends. PostgreSQL tests create a
database of their own on the local server (127.0.0.1:5432, trust auth) and
drop it afterwards; they skip when the server is unreachable, except under
CI (`CI` set), where that is a failure.
"""

from __future__ import annotations

import asyncio
import gc
import io
import os
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest

from station.store.db import Database

try:
    import vehicle.money  # noqa: F401
except ImportError:  # a checkout installed before the agent became its own distribution
    pytest.exit("the agent is its own distribution (agent/): .venv/bin/pip install -e ./agent", 4)

# A test that hangs prints what every task of its event loop awaits, this long
# before pytest-timeout ends it (its own dump shows only the loop's select()).
HANG_REPORT_BEFORE_TIMEOUT_S = 15


def _report_hung_tasks(test: str) -> None:
    out = io.StringIO()
    out.write(f"\n==== {test} is about to time out; its event loops' tasks:\n")
    loops = [o for o in gc.get_objects() if isinstance(o, asyncio.AbstractEventLoop)]
    for loop in loops:
        if not loop.is_running():
            continue
        for task in list(asyncio.all_tasks(loop)):
            out.write(f"-- {task!r}\n")
            task.print_stack(limit=12, file=out)
    sys.stderr.write(out.getvalue())
    sys.stderr.flush()


@pytest.fixture(autouse=True)
def report_hangs(request: pytest.FixtureRequest) -> Iterator[None]:
    marker = request.node.get_closest_marker("timeout")
    timeout = request.config.getini("timeout")
    if marker is not None:
        timeout = marker.args[0] if marker.args else marker.kwargs.get("timeout", timeout)
    delay = float(timeout or 0) - HANG_REPORT_BEFORE_TIMEOUT_S
    if delay <= 0:
        yield
        return
    timer = threading.Timer(delay, _report_hung_tasks, args=(request.node.nodeid,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


PG_DSN = os.environ.get("CHARGEPAY_TEST_PG_DSN", "postgresql://postgres@127.0.0.1:5432/test")


def _pg_admin_dsn() -> str:
    return PG_DSN


async def _pg_create(name: str) -> None:
    conn = await asyncpg.connect(_pg_admin_dsn(), timeout=5)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()


async def _pg_drop(name: str) -> None:
    conn = await asyncpg.connect(_pg_admin_dsn(), timeout=5)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


def _pg_url(name: str) -> str:
    base = PG_DSN.rsplit("/", 1)[0]
    return f"{base.replace('postgresql://', 'postgresql+asyncpg://', 1)}/{name}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A URL to a fresh, empty database of each kind (no schema yet)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'station.db'}"
        return
    name = f"chargepay_{uuid.uuid4().hex[:12]}"
    try:
        asyncio.run(_pg_create(name))
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is required under CI: {exc}")
        pytest.skip(f"PostgreSQL unreachable: {exc}")
    try:
        yield _pg_url(name)
    finally:
        asyncio.run(_pg_drop(name))


@pytest.fixture
async def db(database_url: str) -> AsyncIterator[Database]:
    """A migrated database, disposed of after the test."""
    database = Database(database_url)
    await database.upgrade()
    try:
        yield database
    finally:
        await database.dispose()


@pytest.fixture(scope="session")
def stripe_url() -> Iterator[str]:
    """A localstripe server (a subprocess) shared by the session's tests."""
    from simulators.stripe_sandbox import stripe_sandbox

    with stripe_sandbox() as url:
        yield url
