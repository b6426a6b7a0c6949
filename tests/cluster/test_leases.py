"""Leases and the event log as the nodes keep them, on one PostgreSQL (in-process nodes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import pytest

from station.cluster.node import ClusterNode, asyncpg_dsn
from station.payments.fake_gateway import FakeGateway
from station.settings import Settings
from station.store.db import Database
from tests.payments.test_settlement import new_session

pytestmark = pytest.mark.postgres


class Connections:
    """The OCPP side as a node's leases see it: which connections it was told to drop."""

    def __init__(self) -> None:
        self.dropped: list[tuple[str, int]] = []

    def drop(self, charge_point_id: str, epoch: int, reason: str) -> None:
        self.dropped.append((charge_point_id, epoch))


@pytest.fixture
async def make_node(pg_url: str) -> AsyncIterator[Callable[[str], Any]]:
    started: list[ClusterNode] = []

    async def start(name: str) -> ClusterNode:
        settings = Settings(database_url=pg_url, node_id=name, cluster_lease_s=30)
        node = ClusterNode(settings, Connections())  # type: ignore[arg-type]
        await node.start()
        started.append(node)
        return node

    yield start
    for node in started:
        await node.close()


async def _eventually(check: Callable[[], bool]) -> None:
    async with asyncio.timeout(5):
        while not check():  # noqa: ASYNC110 (the listener's callbacks set no event)
            await asyncio.sleep(0.02)


async def test_a_newer_connection_elsewhere_takes_the_lease_and_the_old_node_drops_its_own(
    make_node: Callable[[str], Any],
) -> None:
    a, b = await make_node("node-a"), await make_node("node-b")
    first = await a.acquire("CP-1", "ocpp2.0.1")
    await _eventually(lambda: b.holder("CP-1") is not None)
    assert b.holder("CP-1").node_id == "node-a"

    second = await b.acquire("CP-1", "ocpp2.0.1")

    assert second == first + 1
    await _eventually(lambda: a._connections.dropped == [("CP-1", first)])
    assert await a.release("CP-1", first) is False  # B's now: A writes nothing
    await _eventually(lambda: a.holder("CP-1") is not None)
    assert a.holder("CP-1").node_id == "node-b"


async def test_a_node_restarted_under_its_id_does_not_revive_the_leases_of_its_last_life(
    make_node: Callable[[str], Any],
) -> None:
    a, b = await make_node("node-a"), await make_node("node-b")
    await a.acquire("CP-1", "ocpp2.0.1")
    await _eventually(lambda: b.holder("CP-1") is not None)
    await a.close()  # killed: no release

    again = await make_node("node-a")
    await again.renew()  # its renewals say node-a is alive

    await _eventually(lambda: "CP-1" not in b._leases)
    await asyncio.sleep(0.2)
    assert b.holder("CP-1") is None


async def test_events_of_sessions_over_for_a_day_are_pruned(
    make_node: Callable[[str], Any], pg_url: str
) -> None:
    db = Database(pg_url)
    gateway = FakeGateway()
    conn = await asyncpg.connect(asyncpg_dsn(pg_url))
    try:
        old = await new_session(db, gateway, status="settled")
        await conn.execute(  # over two days ago
            "UPDATE sessions SET updated_at = $2, negotiation_id = 'neg_0' WHERE session_id = $1",
            old,
            datetime.now(UTC) - timedelta(days=2),
        )
        recent = await new_session(db, gateway, status="settled")
        await conn.execute(  # over a moment ago
            "UPDATE sessions SET updated_at = now() WHERE session_id = $1", recent
        )
        for session_id in (old, recent):
            await conn.execute(
                "INSERT INTO session_event_log VALUES ($1, 1, 'status', '{}', now())", session_id
            )
        node = await make_node("node-a")
        await node._expire()
        left = {r[0] for r in await conn.fetch("SELECT session_id FROM session_event_log")}
    finally:
        await conn.close()
        await db.dispose()
    assert left == {recent}
